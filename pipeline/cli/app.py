"""The typer application and the shared start-up of every command."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from typer import Abort
from typer._click.exceptions import UsageError

from pipeline.cli.chinese import in_chinese, usage_error_text
from pipeline.errors import ActionRefused
from pipeline.reference import ReferenceConfigError
from pipeline.runtime import Runtime, get_runtime, set_runtime
from pipeline.settings import SettingsError, load_settings

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
    try:
        return get_runtime()
    except SettingsError as exc:
        err_console.print(f"[red]配置错误：[/red]{exc}")
        raise typer.Exit(3) from exc


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]错误：[/red]{message}", highlight=False)
    return typer.Exit(code)


def main() -> None:
    from pipeline.cli import commands  # noqa: F401  (registers the commands)
    from pipeline.rules import SchemeError

    try:
        set_runtime(Runtime(load_settings()))
    except SettingsError as exc:
        err_console.print(f"[red]配置错误：[/red]{exc}", highlight=False)
        sys.exit(3)
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
    except (SchemeError, ReferenceConfigError) as exc:
        err_console.print(f"[red]配置错误：[/red]{exc}", highlight=False)
        sys.exit(3)
    except ActionRefused as exc:
        err_console.print(f"[red]错误：[/red]{exc}", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
