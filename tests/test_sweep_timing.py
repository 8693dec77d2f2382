"""Lost work is queued again within a minute with the shipped settings: the sweep delay plus the
interval of whatever sweeps (the compose file's sweeper, the scheduler's tick) stays under 60 s."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from pipeline.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def option_default(command: str, option: str) -> float:
    from pipeline.cli import commands  # noqa: F401  (registers the commands)
    from pipeline.cli.app import app

    [callback] = [c.callback for c in app.registered_commands if c.name == command]
    return float(inspect.signature(callback).parameters[option].default.default)


def test_lost_work_is_queued_again_within_a_minute() -> None:
    after = Settings.model_fields["sweep_after_seconds"].default
    sweeper = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["sweeper"]["command"]
    assert sweeper[:2] == ["sweep", "--loop"]
    assert after + float(sweeper[2]) <= 60
    assert after + option_default("scheduler", "tick") <= 60
    # The broker's own return of an unacknowledged task comes later; the sweep does not wait for it.
    assert after < Settings.model_fields["visibility_timeout"].default
