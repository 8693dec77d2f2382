"""Where alerts go: addresses from the database, completed or overridden by config/recipients.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


def load_recipients(path: Path) -> RecipientsConfig:
    if not path.exists():
        return RecipientsConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return RecipientsConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise RecipientsConfigError(f"{path}：收件人配置有误：{exc}") from exc


def addresses(contact: Contact | None, *, email: str | None = None) -> list[Address]:
    """The contact's channels; an email in the config overrides the one from the database."""
    found: list[Address] = []
    chosen = (contact.email if contact and contact.email else None) or email
    if chosen:
        found.append(Address("email", chosen))
    for hook in contact.webhooks if contact else ():
        found.append(Address(hook.format, hook.url, hook.secret_env))
    return found
