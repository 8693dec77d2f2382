"""Settings read once from the environment (prefix ``PIPELINE_``) and validated at start-up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = Path("data")


class SettingsError(RuntimeError):
    """A configuration value is wrong; the message names the variable, in Chinese."""


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
    as_of: date | None = Field(default=None, description="pin the evaluation date (replays, demos)")
    now: datetime | None = Field(
        default=None, description="start the wall clock at this instant (drills, demos); it then runs in real time",
    )
    task_max_attempts: int = Field(default=5, ge=1, description="deliveries of one task before it is failed")
    sweep_after_seconds: int = Field(default=300, ge=1, description="re-queue batches not applied after this")
    visibility_timeout: int = Field(default=3600, ge=1, description="Redis: seconds before an unacked task returns")

    # Alerts (SPEC §6). With no SMTP host, email goes to .eml files under data_dir/outbox.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_sender: str = "pipeline@localhost"
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key for generic JSON webhooks")
    alert_max_attempts: int = Field(default=8, ge=1)
    alert_backoff_seconds: int = Field(default=30, ge=1)
    alert_claim_seconds: int = Field(
        default=120, ge=5, description="a sender's claim on outbox rows; a dead sender's rows go out again after this",
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="links in messages point here")
    scheduler_lease_seconds: int = Field(default=90, ge=1, description="a silent scheduler loses its lease after this")

    # Web (issue 4). Without a key, embedded defaults keep a generated one in data_dir/secret_key;
    # with a broker configured (production) a missing key stops start-up.
    secret_key: SecretStr | None = Field(default=None, description="signs web sessions (PIPELINE_SECRET_KEY)")
    trusted_user_header: str | None = Field(default=None, description="username header set by an SSO proxy")
    session_max_age: int = Field(default=12 * 3600, ge=60, description="seconds a web sign-in lasts")

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
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
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
