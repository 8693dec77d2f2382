"""The password policy: each rule refused with a Chinese message naming it, wherever a password is set."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.accounts import add_user, set_password
from pipeline.db import session_scope
from pipeline.models import User
from pipeline.passwords import MIN_LENGTH, PasswordRefused, check_password, common_passwords, generate_password
from pipeline.runtime import Runtime
from tests.cli_helpers import clean_env, pipeline
from tests.factories import ACTOR


@pytest.mark.parametrize(("password", "username", "rule"), [
    ("12345678", "office", "至少需要 10 个字符"),
    ("short", "office", "至少需要 10 个字符（现为 5 个）"),
    ("jingzhou-office", "jingzhou-office", "不能与用户名相同"),
    ("JINGZHOU-OFFICE", "jingzhou-office", "不能与用户名相同"),
    ("my-Office-2024!", "office", "不能包含用户名"),
    ("1234567890", "office", "过于常见"),
    ("qwertyuiop", "office", "过于常见"),
    ("Password123", "office", "过于常见"),
    ("woaini1314", "office", "过于常见"),
])
def test_each_rule_is_named(password: str, username: str, rule: str) -> None:
    with pytest.raises(PasswordRefused, match=rule.replace("（", r"\（").replace("）", r"\）")):
        check_password(password, username=username)


@pytest.mark.parametrize("password", ["correct-horse-battery", "荆州投资科2024年账号", "zq8#Lm2!vT", "ab-ab-ab-ab"])
def test_good_passwords_pass(password: str) -> None:
    check_password(password, username="office")


def test_a_two_letter_username_may_appear_inside_a_password() -> None:
    check_password("unlikely-ma-phrase", username="ma")  # too short a name to forbid as a substring
    with pytest.raises(PasswordRefused, match="不能与用户名相同"):
        check_password("maMAmamaMA", username="mamamamama")


def test_the_shipped_list_is_a_few_thousand_common_passwords() -> None:
    common = common_passwords()
    assert 6000 <= len(common) <= 10000
    assert {"123456", "password", "1qaz2wsx3edc", "5201314", "qq123456789"} <= common
    assert all(p == p.lower() for p in common)


def test_generated_passwords_pass_the_policy() -> None:
    for _ in range(50):
        password = generate_password()
        assert len(password) >= MIN_LENGTH
        check_password(password, username="office")


def test_the_domain_refuses_weak_passwords_when_adding_or_setting(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    with session_scope(rt.session_factory) as session, pytest.raises(PasswordRefused, match="过于常见"):
        add_user(session, username="zhao1", role="office", password="iloveyou12", clock=rt.clock, actor=ACTOR)
    with session_scope(rt.session_factory) as session:
        add_user(session, username="zhao1", role="office", password="a-decent-passphrase", clock=rt.clock, actor=ACTOR)
    with session_scope(rt.session_factory) as session, pytest.raises(PasswordRefused, match="不能包含用户名"):
        set_password(session, username="zhao1", password="zhao1-and-more-words", actor=ACTOR, now=rt.clock.now())
    with session_scope(rt.session_factory) as session:
        assert session.scalar(select(User.username)) == "zhao1"


def test_the_cli_refuses_a_weak_password_in_chinese(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    weak = pipeline(env, "user", "add", "office", "--role", "office", "--password", "12345678")
    assert weak.returncode == 1 and "密码太短：至少需要 10 个字符" in weak.stderr
    common = pipeline(env, "user", "add", "office", "--role", "office", "--password", "1q2w3e4r5t")
    assert common.returncode == 1 and "过于常见" in common.stderr
    made = pipeline(env, "user", "add", "office", "--role", "office", "--password", "a-decent-passphrase")
    assert made.returncode == 0, made.stderr
    named = pipeline(env, "user", "passwd", "office", "--password", "office-office-office")
    assert named.returncode == 1 and "不能包含用户名" in named.stderr
    help_text = pipeline(env, "user", "add", "--help")
    assert "至少 10 个字符" in help_text.stdout
