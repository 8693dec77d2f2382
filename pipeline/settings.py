"""Settings read once from the environment (prefix ``PIPELINE_``) and validated at start-up."""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("data")

# How long one send can last, from the per-step timeouts: the SMTP channel cuts a send that has
# run SMTP_SEND_STEPS timeouts (connect, greeting, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA,
# the message); a webhook waits at most its timeout to connect, to write and to read.
SMTP_SEND_STEPS = 10
WEBHOOK_SEND_PHASES = 3
# A sender's claim on a row lasts this many times the longest send (default), and never less
# than CLAIM_MIN_OVER_SEND times it (an explicit PIPELINE_ALERT_CLAIM_SECONDS is checked).
CLAIM_OVER_SEND = 1.5
CLAIM_MIN_OVER_SEND = 1.25
RETIRED = {
    "PIPELINE_ALERT_MAX_ATTEMPTS": "消息在 PIPELINE_ALERT_RETRY_HOURS（默认 24 小时）内按指数退避重试，"
                                   "之后标记为发送失败，不再按次数计；请删除该变量",
}


class Settings(BaseSettings):
    """Runtime configuration. Every default works with no server running."""

    # An empty variable counts as unset (compose passes `${VAR:-}` through as an empty string).
    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="local data folder (SQLite, broker, outbox)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir")
    broker_url: str | None = Field(default=None, description="Celery broker; default a SQLite-backed broker")
    timezone: str = "Asia/Shanghai"
    scheme: str = Field(default="jingzhou-2024", description="name of a scheme in config/schemes or a path")
    config_dir: Path = Field(default=REPO_ROOT / "config")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Import limits (bad input never takes unbounded memory; SPEC §3 for the future 报告期).
    import_max_rows: int = Field(default=200_000, gt=0, description="rows of one sheet, csv or jsonl file")
    xlsx_max_inflated_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="an xlsx workbook's parts, decompressed, together",
    )
    max_future_days: int = Field(default=31, ge=0, description="a 报告期 later than today by more is refused")
    api_max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="a JSON body of POST /api/updates")
    api_max_depth: int = Field(default=16, ge=3, le=1000, description="nesting of a JSON body (arrays, objects)")
    api_max_records: int = Field(default=10_000, gt=0, description="updates in one JSON body")
    as_of: date | None = Field(default=None, description="pin the evaluation date (replays, demos)")
    now: datetime | None = Field(
        default=None, description="start the wall clock at this instant (drills, demos); it then runs in real time",
    )
    task_max_attempts: int = Field(default=5, ge=1, description="deliveries of one task before it is failed")
    # A batch whose task the broker lost is queued again this long after it was last queued, by the
    # next sweep: with the sweeper every 15 s (docker-compose.yml), within a minute of the loss.
    sweep_after_seconds: int = Field(default=30, ge=1, description="re-queue batches not applied after this")
    visibility_timeout: int = Field(default=300, ge=1, description="Redis: seconds before an unacked task returns")
    task_time_limit: int = Field(default=1800, ge=10, description="seconds a worker task may run before it is killed")
    db_statement_timeout: int = Field(default=600, ge=1, description="PostgreSQL: seconds one statement may run")
    db_lock_timeout: int = Field(default=120, ge=1, description="PostgreSQL: seconds a statement may wait for a lock")
    reflag_chunk_size: int = Field(default=20_000, ge=100, description="project ids per chunk of a whole-reserve run")

    # Alerts (SPEC §6). With no SMTP host, email goes to .eml files under data_dir/outbox.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    # Required with a mail server: the address mail is sent from (the .eml files use LOCAL_SENDER).
    smtp_sender: str | None = None
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key for generic JSON webhooks")
    alert_retry_hours: float = Field(
        default=24, gt=0, description="a send refused for a passing reason is retried this long from its first attempt",
    )
    alert_backoff_seconds: int = Field(default=30, ge=1, description="first retry delay; doubles, up to the cap, jittered")
    alert_backoff_max_seconds: int = Field(default=3600, ge=1, description="the longest wait between two tries")
    alert_smtp_timeout_seconds: float = Field(default=60, gt=0, description="each SMTP step waits this long")
    alert_webhook_timeout_seconds: float = Field(default=30, gt=0, description="a webhook's connect, write, read each")
    alert_claim_seconds: int | None = Field(
        default=None, ge=1, description="a sender's claim on one row; default 1.5 × the longest send",
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="links in messages point here")
    scheduler_lease_seconds: int = Field(default=90, ge=1, description="a silent scheduler loses its lease after this")

    # Web (issue 4). Without a key, embedded defaults keep a generated one in data_dir/secret_key;
    # with a broker configured (production) a missing key stops start-up.
    secret_key: SecretStr | None = Field(default=None, description="signs web sessions (PIPELINE_SECRET_KEY)")
    trusted_user_header: str | None = Field(default=None, description="username header set by an SSO proxy")
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        default=(), description="reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-* headers and "
                                "SSO user header are believed",
    )
    session_max_age: int = Field(default=12 * 3600, ge=60, description="seconds a web sign-in lasts at most")
    session_idle_seconds: int = Field(default=2 * 3600, ge=60, description="a sign-in unused this long ends")
    login_max_failures: int = Field(default=5, ge=1, description="failed sign-ins of one account before it is locked")
    login_max_failures_per_address: int = Field(
        default=20, ge=1, description="failed sign-ins from one client address before it is locked")
    login_lock_seconds: int = Field(default=180, ge=1, description="the first lock; each further failure doubles it")
    login_lock_max_seconds: int = Field(default=3600, ge=1, description="the longest lock")
    login_window_seconds: int = Field(
        default=900, ge=1, description="failures are counted until this long after the last failure or lock")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: Any) -> Any:
        """A comma- or space-separated list of IPs and CIDRs (or a JSON-style list)."""
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").replace("[", " ").replace("]", " ")
                     .replace('"', " ").split() if part]
        if isinstance(value, (list, tuple)):
            networks = []
            for part in value:
                try:
                    networks.append(ip_network(str(part).strip(), strict=False))
                except ValueError as exc:
                    raise ValueError(f"不是有效的 IP 地址或网段：{part}") from exc
            return tuple(networks)
        return value

    @field_validator("smtp_sender", mode="before")
    @classmethod
    def _sender_is_an_address(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip()
        _, address = parseaddr(text)
        local, _, domain = address.partition("@")
        if not local or not domain or " " in address:
            raise ValueError(f"不是有效的发件人邮箱地址：{text}（例如 pipeline@jingzhou.gov.cn）")
        return text

    @model_validator(mode="after")
    def _mail_server_needs_a_sender(self) -> Settings:
        if self.smtp_host and not self.smtp_sender:
            raise ValueError("已设置 PIPELINE_SMTP_HOST，但未设置 PIPELINE_SMTP_SENDER：请填写发件人邮箱地址"
                             "（例如 pipeline@jingzhou.gov.cn），收件方据此识别和回复")
        return self

    @model_validator(mode="after")
    def _header_needs_proxies(self) -> Settings:
        if self.trusted_user_header and not self.trusted_proxies:
            raise ValueError("已设置 PIPELINE_TRUSTED_USER_HEADER，但未设置 PIPELINE_TRUSTED_PROXIES："
                             "单点登录用户头只接受来自所配置代理地址的请求，请填写代理的 IP 或网段")
        if self.login_lock_max_seconds < self.login_lock_seconds:
            raise ValueError("PIPELINE_LOGIN_LOCK_MAX_SECONDS 不能小于 PIPELINE_LOGIN_LOCK_SECONDS")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"未知时区：{value}") from exc
        return value

    @field_validator("now", mode="before")
    @classmethod
    def _aware_instant(cls, value: Any) -> Any:
        example = "例如 2027-01-05T08:59:00+08:00"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError as exc:
                raise ValueError(f"应为 ISO 8601 格式的时间，{example}") from exc
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"应写明时区，{example}")
        return value

    @model_validator(mode="after")
    def _start_the_clock(self) -> Settings:
        # PIPELINE_NOW names the instant the settings are read at; the clock runs on from it.
        if self.now is not None:
            self._clock_offset = self.now - datetime.now(UTC)
        return self

    _clock_offset: timedelta = PrivateAttr(default=timedelta(0))

    @property
    def clock_offset(self) -> timedelta:
        """How far the wall clock is moved (PIPELINE_NOW); zero when it is not."""
        return self._clock_offset

    @model_validator(mode="after")
    def _claim_outlasts_a_send(self) -> Settings:
        least = math.ceil(CLAIM_MIN_OVER_SEND * self.alert_send_limit_seconds)
        if self.alert_claim_seconds is not None and self.alert_claim_seconds < least:
            raise ValueError(
                f"环境变量 PIPELINE_ALERT_CLAIM_SECONDS 的值（{self.alert_claim_seconds} 秒）太短：按当前的超时设置，"
                f"一次发送最长可达 {self.alert_send_limit_seconds:g} 秒（邮件每步等待 "
                f"{self.alert_smtp_timeout_seconds:g} 秒 × {SMTP_SEND_STEPS} 步，Webhook 等待 "
                f"{self.alert_webhook_timeout_seconds:g} 秒 × {WEBHOOK_SEND_PHASES} 段），认领时间至少应为 {least} 秒。"
                "请调大它、调小 PIPELINE_ALERT_SMTP_TIMEOUT_SECONDS / PIPELINE_ALERT_WEBHOOK_TIMEOUT_SECONDS，"
                "或不设置它（自动取一次发送最长耗时的 1.5 倍）"
            )
        return self

    @property
    def alert_smtp_send_limit_seconds(self) -> float:
        """The longest one email can take: the SMTP channel cuts the connection then."""
        return SMTP_SEND_STEPS * self.alert_smtp_timeout_seconds

    @property
    def alert_send_limit_seconds(self) -> float:
        """The longest one send can take, on any channel."""
        return max(self.alert_smtp_send_limit_seconds, WEBHOOK_SEND_PHASES * self.alert_webhook_timeout_seconds)

    @property
    def alert_claim(self) -> timedelta:
        """A sender's claim on the one row it sends: comfortably longer than the longest send."""
        seconds = self.alert_claim_seconds or math.ceil(CLAIM_OVER_SEND * self.alert_send_limit_seconds)
        return timedelta(seconds=seconds)

    @property
    def alert_retry_window(self) -> timedelta:
        return timedelta(hours=self.alert_retry_hours)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'pipeline.sqlite3').as_posix()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite3').as_posix()}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def is_embedded(self) -> bool:
        """True when the broker is the serverless default (one machine, no Redis)."""
        return self.broker_url is None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a wrong value raises SettingsError naming the variable."""
    retired = [f"环境变量 {name} 已不再使用：{instead}" for name, instead in RETIRED.items() if os.environ.get(name)]
    if retired:
        raise SettingsError("\n".join(retired))
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a check across variables: its message names them
                lines.append(str(err.get("ctx", {}).get("error", err["msg"])))
                continue
            field = ".".join(str(p) for p in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"环境变量 PIPELINE_{field.upper()} 的值无效：{message}")
        raise SettingsError("\n".join(lines)) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import)."""
    return load_settings()
