"""Where alerts go: addresses from the database, completed or overridden by config/recipients.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class RecipientsConfigError(ValueError):
    """config/recipients.yaml is malformed; the message names the file and the fault."""


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    format: Literal["json", "wecom", "dingtalk"] = "json"
    secret_env: str | None = None


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None
    email: str | None = None
    webhooks: tuple[Webhook, ...] = ()


class RecipientsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    office: Contact = Contact(name="市发改委投资科")
    leaders: dict[str, Contact] = {}
    units: dict[str, Contact] = {}


@dataclass(frozen=True)
class Address:
    channel: str  # email | json | wecom | dingtalk
    recipient: str  # an email address or a URL
    secret_env: str | None = None


# What a pydantic error type says, in Chinese, of the value at a key.
_EXPECTED = {
    "string_type": "应为文本", "dict_type": "应为映射（key: value）", "model_type": "应为映射（key: value）",
    "model_attributes_type": "应为映射（key: value）", "tuple_type": "应为列表", "list_type": "应为列表",
}


def _describe(err: Any) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "（整个文件）"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"未知的配置项 {key}（可用的项：office、leaders、units；联系人下：name、email、webhooks）"
    if kind == "missing":
        return f"缺少必填项 {key}"
    if kind == "literal_error":
        return f"配置项 {key} 的值无效：应为 {err.get('ctx', {}).get('expected', '')} 之一"
    if kind in _EXPECTED:
        return f"配置项 {key} {_EXPECTED[kind]}"
    return f"配置项 {key} 无效：{err['msg']}"


def load_recipients(path: Path) -> RecipientsConfig:
    """Read and validate config/recipients.yaml; a fault raises RecipientsConfigError naming the file."""
    if not path.exists():
        return RecipientsConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else "文件中"
        raise RecipientsConfigError(f"无法读取收件人配置文件 {path}：{where}有 YAML 语法错误（{exc.problem}）") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecipientsConfigError(f"无法读取收件人配置文件 {path}：{exc}") from exc
    if not isinstance(data, dict):
        raise RecipientsConfigError(f"{path} 应为 YAML 映射（key: value），例如 office: {{email: ...}}")
    try:
        return RecipientsConfig.model_validate(data)
    except ValidationError as exc:
        faults = "；".join(_describe(err) for err in exc.errors())
        raise RecipientsConfigError(f"收件人配置文件 {path} 有误：{faults}") from exc


def addresses(contact: Contact | None, *, email: str | None = None) -> list[Address]:
    """The contact's channels; an email in the config overrides the one from the database."""
    found: list[Address] = []
    chosen = (contact.email if contact and contact.email else None) or email
    if chosen:
        found.append(Address("email", chosen))
    for hook in contact.webhooks if contact else ():
        found.append(Address(hook.format, hook.url, hook.secret_env))
    return found
