"""The password policy, applied wherever a password is set (CLI, web: new account, reset, change).

A password must have at least ``MIN_LENGTH`` characters, must not be the username nor contain it,
and must not be one of the common passwords shipped in ``common-passwords.txt`` (compared
lower-cased; the file says where the list comes from). Each refusal names the rule, in Chinese.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from importlib import resources

from pipeline.errors import ActionRefused

MIN_LENGTH = 10
MIN_NAME_IN_PASSWORD = 3  # a username this short is too common a substring to forbid inside passwords
POLICY = f"密码要求：至少 {MIN_LENGTH} 个字符，不能是用户名或包含用户名，不能是常见密码"


class PasswordRefused(ActionRefused):
    """A password breaks the policy; the message names the rule."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("pipeline").joinpath("common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_password(password: str, *, username: str) -> None:
    """Raise PasswordRefused naming the first rule the password breaks."""
    if len(password) < MIN_LENGTH:
        raise PasswordRefused(f"密码太短：至少需要 {MIN_LENGTH} 个字符（现为 {len(password)} 个）")
    lowered, name = password.lower(), username.strip().lower()
    if name and lowered == name:
        raise PasswordRefused("密码不能与用户名相同")
    if len(name) >= MIN_NAME_IN_PASSWORD and name in lowered:
        raise PasswordRefused("密码不能包含用户名")
    if lowered in common_passwords():
        raise PasswordRefused("密码过于常见（在常见密码清单中），请换一个不易被猜到的密码")


def generate_password() -> str:
    """A random password that passes the policy (16 URL-safe characters), to be shown once."""
    while True:
        candidate = secrets.token_urlsafe(12)
        if candidate.lower() not in common_passwords():
            return candidate
