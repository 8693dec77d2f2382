"""The words typer writes itself, in Chinese: usage lines, section titles, the help option, the
[默认/必填] notes of the help screens, and usage errors (unknown option, missing value, bad value).

Every command gets a context whose help formatter writes them in Chinese; ``usage_error_text``
puts a usage error in Chinese with the command's usage line and where to find help. Built on
typer's bundled click (``typer._click``), so pyproject pins typer's minor version and
tests/test_cli_chinese.py walks every help screen and error kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from typer._click.core import Command, Context
from typer._click.exceptions import (
    BadOptionUsage,
    BadParameter,
    MissingParameter,
    NoArgsIsHelpError,
    NoSuchOption,
    UsageError,
)
from typer._click.formatting import HelpFormatter
from typer.core import TyperGroup

SECTIONS = {"Options": "选项", "Commands": "命令", "Arguments": "参数"}
USAGE_WORDS = {"[OPTIONS]": "[选项]", "COMMAND": "命令", "[ARGS]...": "[参数]..."}
HELP_OPTION = "显示本帮助并退出。"
PARAM_KINDS = {"option": "选项", "argument": "参数", "parameter": "参数"}
NOTE_PREFIXES = (("default: ", "默认："), ("env var: ", "环境变量："))

_NOTES = re.compile(r"\s*\[([^\[\]]*)\]$")  # typer's trailing notes: "  [default: city; required]"


def _note(part: str) -> str | None:
    if part == "required":
        return "必填"
    for english, chinese in NOTE_PREFIXES:
        if part.startswith(english):
            return chinese + part[len(english):]
    return None


def help_text(text: str) -> str:
    """A parameter's help as typer wrote it, with its own words in Chinese."""
    if text == "Show this message and exit.":
        return HELP_OPTION
    match = _NOTES.search(text)
    if match is None:
        return text
    notes = [_note(p) for p in match.group(1).split("; ")]
    if None in notes:  # brackets of the help text itself, not typer's notes
        return text
    return f"{text[: match.start()]}  [{'；'.join(n for n in notes if n)}]"


def _usage_args(args: str) -> str:
    return " ".join(USAGE_WORDS.get(word, word) for word in args.split(" "))


class ChineseHelpFormatter(HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _usage_args(args), "用法：" if prefix is None else prefix)

    def write_heading(self, heading: str) -> None:
        self.write(f"{'':>{self.current_indent}}{heading}：\n")

    def section(self, name: str):  # type: ignore[no-untyped-def]  # the base's context manager
        return super().section(SECTIONS.get(name, name))

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, help_text(text)) for term, text in rows], col_max, col_spacing)


class ChineseContext(Context):
    formatter_class = ChineseHelpFormatter


def _commands(command: Command) -> Iterator[Command]:
    yield command
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            yield from _commands(sub)


def in_chinese(command: Command) -> Command:
    """The command tree with every command's help and usage lines written in Chinese."""
    for each in _commands(command):
        each.context_class = ChineseContext
    return command


def _error_message(error: UsageError) -> str:
    if isinstance(error, NoSuchOption):
        text = f"没有选项 {error.option_name}"
        if error.possibilities:
            text += f"，是否要用 {'、'.join(sorted(error.possibilities))}？"
        return text
    if isinstance(error, MissingParameter):
        kind = PARAM_KINDS.get(error.param_type or (error.param.param_type_name if error.param else ""), "参数")
        return f"缺少{kind} {_hint(error)}".rstrip() + "。"
    if isinstance(error, BadParameter):
        return f"{_hint(error) or '参数'} 的值无效：{_value_problem(error.message)}"
    if isinstance(error, BadOptionUsage):
        if error.message.endswith("requires an argument."):
            return f"选项 {error.option_name} 需要一个值。"
        if error.message.endswith("does not take a value."):
            return f"选项 {error.option_name} 不接受值。"
        return error.message
    return _plain_usage_problem(error.message)


def _hint(error: BadParameter) -> str:
    if isinstance(error.param_hint, str):
        return error.param_hint
    if error.param_hint:
        return " / ".join(error.param_hint)
    return error.param.get_error_hint() if error.param is not None else ""


def _value_problem(message: str) -> str:
    if "valid integer" in message:
        return "应为整数"
    if "valid number" in message:
        return "应为数字"
    return message


_PLAIN = (
    (re.compile(r"Got unexpected extra argument\(s\) \((.*)\)"), "多余的参数：{0}"),
    (re.compile(r"No such command '(.*)'\."), "没有命令 '{0}'。"),
    (re.compile(r"Missing command\."), "缺少命令。"),
)


def _plain_usage_problem(message: str) -> str:
    for pattern, chinese in _PLAIN:
        match = pattern.fullmatch(message)
        if match:
            return chinese.format(*match.groups())
    return message


def usage_error_text(error: UsageError) -> str:
    """What a user sees for a usage error: the command's usage line, where to find help, and the
    problem in Chinese."""
    if isinstance(error, NoArgsIsHelpError):
        return error.format_message()  # the help screen itself
    lines: list[str] = []
    ctx = error.ctx
    if ctx is not None:
        lines.append(ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            lines.append(f"运行 '{ctx.command_path} {ctx.help_option_names[0]}' 查看帮助。")
        lines.append("")
    lines.append(f"错误：{_error_message(error)}")
    return "\n".join(lines)

