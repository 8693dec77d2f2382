"""The typer application and the shared start-up of every command.

Start-up stays light: `pipeline --help` imports typer and rich and the command modules, whose
heavy imports (SQLAlchemy, Celery, openpyxl, the web) happen inside the command that needs them.
Settings are read and validated when a command first asks for the runtime.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from typer import Abort
from typer._click.exceptions import UsageError

from pipeline.cli.chinese import in_chinese, usage_error_text
from pipeline.errors import ActionRefused, SettingsError

if TYPE_CHECKING:
    from pipeline.audit import Actor
    from pipeline.clock import Clock
    from pipeline.runtime import Runtime

app = typer.Typer(
    name="pipeline",
    help="重大项目红黄绿挂牌监测系统：项目储备、挂牌、三率与预警。",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)


def runtime() -> Runtime:
    """The runtime for this command, with settings validated (a bad value stops with its name)."""
    from pipeline.runtime import get_runtime

    try:
        return get_runtime()
    except SettingsError as exc:
        err_console.print(f"[red]配置错误：[/red]{exc}", highlight=False)
        raise typer.Exit(3) from exc


class ClockStampedFormatter(logging.Formatter):
    """Log lines stamped with the runtime's clock (which PIPELINE_NOW moves in a drill), in Chinese."""

    LEVELS = {"DEBUG": "调试", "INFO": "信息", "WARNING": "警告", "ERROR": "错误", "CRITICAL": "严重错误"}

    def __init__(self, clock: Clock) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.clock = clock

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        from datetime import datetime

        return (datetime.fromtimestamp(record.created, self.clock.tz) + self.clock.offset).strftime("%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = self.LEVELS.get(record.levelname, record.levelname)
        return super().format(record)


def log_to_stderr(rt: Runtime) -> None:
    """Show the product's log (what the scheduler plans, warns of and fails at) on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(ClockStampedFormatter(rt.clock))
    logger = logging.getLogger("pipeline")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # A tick still running when the next is due is skipped by design (one at a time): not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def cli_actor() -> Actor:
    """The operating-system user running this command: the actor of what it changes, in the audit log."""
    from pipeline.audit import Actor

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid-{os.getuid()}"
    return Actor(name, "cli")


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]错误：[/red]{message}", highlight=False)
    return typer.Exit(code)


def _configuration_error(exc: Exception) -> bool:
    """A file in config/ that is refused (a scheme, the reference lists, the review calendar, the
    holidays, the recipients): told as a configuration error."""
    from pipeline.alerts.calendar import CalendarConfigError
    from pipeline.alerts.holidays import HolidayConfigError
    from pipeline.alerts.recipients import RecipientsConfigError
    from pipeline.reference import ReferenceConfigError
    from pipeline.rules import SchemeError

    return isinstance(exc, (SchemeError, ReferenceConfigError, CalendarConfigError, HolidayConfigError,
                            RecipientsConfigError))


def main() -> None:
    from pipeline.cli import commands  # noqa: F401  (registers the commands)

    command = in_chinese(typer.main.get_command(app))
    try:
        # Not standalone: usage errors come back to be told in Chinese, typer.Exit as its code.
        code = command.main(prog_name="pipeline", standalone_mode=False)
    except UsageError as exc:
        typer.echo(usage_error_text(exc), err=True)
        sys.exit(exc.exit_code)
    except Abort:
        err_console.print("已中止。")
        sys.exit(1)
    except SettingsError as exc:
        err_console.print(f"[red]配置错误：[/red]{exc}", highlight=False)
        sys.exit(3)
    except ActionRefused as exc:
        err_console.print(f"[red]错误：[/red]{exc}", highlight=False)
        sys.exit(1)
    except Exception as exc:
        if not _configuration_error(exc):
            raise
        err_console.print(f"[red]配置错误：[/red]{exc}", highlight=False)
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)
