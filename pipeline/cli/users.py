"""Accounts of the web workspace: `pipeline user add|list|passwd|disable|enable` and `pipeline token create|revoke`.

Every change goes through ``pipeline.accounts`` with the operating-system user as the actor, so it
is in the audit log beside the same changes made on the web."""

from __future__ import annotations

import getpass
import sys

import typer
from pipeline.cli.app import app, cli_actor, console, fail, runtime
from pipeline.cli.reserve import ensure_database
from pipeline.passwords import MIN_LENGTH, generate_password
from pipeline.roles import ROLE_NAMES, ROLES

user_app = typer.Typer(help="网页账号：投资科（office）、包保领导（leader）、责任单位（unit）。", no_args_is_help=True)
token_app = typer.Typer(help="API 令牌（Authorization: Bearer …）。", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


def _password(given: str | None) -> tuple[str, bool]:
    """The password given, else asked for on a terminal, else a generated one (printed once)."""
    if given:
        return given, False
    if sys.stdin.isatty():
        return _ask_password(), False
    return generate_password(), True


def _ask_password() -> str:
    """Asked twice on the terminal, without echo, until both agree."""
    while True:
        first = getpass.getpass("密码：")
        if not first:
            console.print("密码不能为空，请重新输入。", highlight=False)
        elif getpass.getpass("再次输入密码：") == first:
            return first
        else:
            console.print("两次输入的密码不一致，请重新输入。", highlight=False)


@user_app.command("add")
def user_add(
    username: str = typer.Argument(..., help="用户名"),
    role: str = typer.Option(..., "--role", help="角色：" + "|".join(ROLES)),
    leader: str = typer.Option(None, "--leader", help="包保领导姓名（leader 角色）"),
    unit: str = typer.Option(None, "--unit", help="责任单位名称（unit 角色）"),
    password: str = typer.Option(
        None, "--password",
        help=f"密码（至少 {MIN_LENGTH} 个字符，不能含用户名，不能是常见密码；不填则提示输入，非交互时自动生成）"),
    display_name: str = typer.Option(None, "--name", help="显示名称（默认为领导姓名、单位名称或用户名）"),
) -> None:
    """新建网页账号。"""
    from pipeline.accounts import add_user
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    if role not in ROLES:
        raise fail(f"角色无效：{role}（应为 {'|'.join(ROLES)}）", 2)
    secret, generated = _password(password)
    with session_scope(rt.session_factory) as session:
        user = add_user(session, username=username, role=role, password=secret, clock=rt.clock, actor=cli_actor(),
                        display_name=display_name, leader=leader, unit=unit)
        shown = f"已创建账号 {user.username}（{ROLE_NAMES[role]}{'：' + (leader or unit) if (leader or unit) else ''}）"
    console.print(shown, highlight=False)
    if generated:
        console.print(f"初始密码（只显示这一次）：{secret}", highlight=False)


@user_app.command("passwd")
def user_passwd(username: str = typer.Argument(..., help="用户名"),
                password: str = typer.Option(None, "--password", help="新密码（不填则提示输入）")) -> None:
    """修改账号密码；该账号已有的网页登录全部退出。"""
    from pipeline.accounts import set_password
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    secret, generated = _password(password)
    with session_scope(rt.session_factory) as session:
        ended = set_password(session, username=username, password=secret, actor=cli_actor(), now=rt.clock.now())
    console.print(f"已修改 {username} 的密码，其 {ended} 个网页登录已退出。"
                  + (f"新密码（只显示这一次）：{secret}" if generated else ""), highlight=False)


@user_app.command("disable")
def user_disable(username: str = typer.Argument(..., help="用户名")) -> None:
    """停用账号：其网页登录立即退出，API 令牌随即失效，不能再登录。"""
    from pipeline.accounts import set_active
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        ended = set_active(session, username=username, active=False, actor=cli_actor(), now=rt.clock.now())
    console.print(f"已停用账号 {username}，其 {ended} 个网页登录已退出，API 令牌已失效。", highlight=False)


@user_app.command("enable")
def user_enable(username: str = typer.Argument(..., help="用户名")) -> None:
    """重新启用已停用的账号（未撤销的 API 令牌恢复有效）。"""
    from pipeline.accounts import set_active
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        set_active(session, username=username, active=True, actor=cli_actor(), now=rt.clock.now())
    console.print(f"已启用账号 {username}。", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """列出网页账号。"""
    from rich.table import Table
    from pipeline.accounts import list_users
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    table = Table(title="网页账号")
    for head in ("用户名", "显示名称", "角色", "关联", "状态"):
        table.add_column(head)
    with session_scope(rt.session_factory) as session:
        for user in list_users(session):
            table.add_row(user.username, user.display_name, user.role_name, user.scope or "—",
                          "启用" if user.active else "停用")
    console.print(table)


@token_app.command("create")
def token_create(username: str = typer.Argument(..., help="用户名"),
                 label: str = typer.Option(None, "--label", help="备注（如用途）")) -> None:
    """为账号生成 API 令牌（只显示这一次，库中只存其 SHA-256）。"""
    from pipeline.accounts import create_token
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        token = create_token(session, username=username, clock=rt.clock, actor=cli_actor(), label=label)
    print(token)


@token_app.command("revoke")
def token_revoke(username: str = typer.Argument(..., help="用户名")) -> None:
    """撤销账号的全部 API 令牌。"""
    from pipeline.accounts import revoke_tokens
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        n = revoke_tokens(session, username=username, now=rt.clock.now(), actor=cli_actor())
    console.print(f"已撤销 {username} 的 {n} 个令牌。", highlight=False)
