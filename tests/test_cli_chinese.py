"""Every help screen and usage error of `pipeline` reads in Chinese, typer's own words included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer._click.core import Command
from typer.core import TyperGroup

from pipeline.cli import app
from pipeline.cli.chinese import help_text, in_chinese
from tests.cli_helpers import clean_env, on_a_terminal, pipeline

# What typer writes in English when left alone.
ENGLISH = ("Usage", "Options", "Commands", "Arguments", "Show this message", "default:", "required", "env var",
           "Error", "Try '", "Missing", "No such", "Invalid value", "Got unexpected", "requires an argument",
           "Possible options")


def command_tree() -> Command:
    from pipeline.cli import commands  # noqa: F401  (registers the commands)

    return in_chinese(typer.main.get_command(app))


def help_screens(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield (*path, "--help")
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from help_screens(sub, (*path, name))


def test_every_help_screen_is_in_chinese(capsys: pytest.CaptureFixture[str]) -> None:
    tree = command_tree()
    screens = list(help_screens(tree))
    assert len(screens) >= 20  # every command and subcommand, not just the top
    for args in screens:
        assert tree.main(list(args), prog_name="pipeline", standalone_mode=False) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"用法：pipeline {' '.join(args[:-1])}".rstrip()), args
        assert "选项：" in out and "显示本帮助并退出。" in out, args
        left = [word for word in ENGLISH if word in out]
        assert not left, (args, left, out)


def test_typer_notes_are_translated_and_help_text_brackets_kept() -> None:
    assert help_text("分组  [default: city; required]") == "分组  [默认：city；必填]"
    assert help_text("比率为 [分子, 分母]") == "比率为 [分子, 分母]"
    assert help_text("Show this message and exit.") == "显示本帮助并退出。"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nosuch"], "错误：没有命令 'nosuch'。"),
        (["flags", "--colr", "red"], "错误：没有选项 --colr，是否要用 --color？"),
        (["rates"], "错误：缺少选项 '--as-of'。"),
        (["demo", "--seed", "x"], "错误：'--seed' 的值无效：应为整数"),
        (["flags", "--color"], "错误：选项 --color 需要一个值。"),
        (["init", "extra"], "错误：多余的参数：extra"),
        (["outbox", "resend"], "错误：缺少参数 'message_id'。"),
    ],
)
def test_usage_errors_are_in_chinese_with_exit_status_2(tmp_path: Path, args: list[str], says: str) -> None:
    done = pipeline(clean_env(tmp_path), *args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert not [word for word in ENGLISH if word in done.stderr], done.stderr


def test_no_arguments_shows_the_help_in_chinese(tmp_path: Path) -> None:
    done = pipeline(clean_env(tmp_path), timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("用法：pipeline [选项] 命令 [参数]...") and "命令：" in done.stderr


def test_password_prompt_is_in_chinese_and_asks_again_until_both_agree(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert pipeline(env, "init", timeout=120).returncode == 0
    code, screen = on_a_terminal(env, ["user", "add", "zhang", "--role", "office"],
                                  ["", "secret-one", "secret-two", "secret-one", "secret-one"], timeout=30)
    assert code == 0, screen
    assert "密码不能为空，请重新输入。" in screen and "两次输入的密码不一致，请重新输入。" in screen
    assert "已创建账号 zhang" in screen and "secret-one" not in screen  # typed without echo
    assert not [word for word in ENGLISH if word in screen], screen
    from pipeline.accounts import authenticate_password
    from pipeline.db import session_scope
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings

    rt = Runtime(load_settings(data_dir=tmp_path))  # the command's data directory
    try:
        with session_scope(rt.session_factory) as s:
            assert authenticate_password(s, "zhang", "secret-one") is not None
            assert authenticate_password(s, "zhang", "secret-two") is None
    finally:
        rt.dispose()
