"""Run the `pipeline` command as a user would: a real process, its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PIPELINE_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def pipeline(env: dict[str, str], *args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


class MovedClock:
    """The wall clock of a test's processes (PIPELINE_NOW): it starts at ``start`` when the test does
    and runs in real time. Each process gets the instant it is started at, so all of them agree."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._started)

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PIPELINE_NOW": self.now().isoformat()}
