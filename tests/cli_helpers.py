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


def on_a_terminal(env: dict[str, str], args: list[str], answers: list[str] | tuple[str, ...] = (),
                  timeout: float = 60, columns: int = 100) -> tuple[int, str]:
    """Run `pipeline` on a pseudo-terminal ``columns`` wide, typing each answer after the next
    prompt that ends in '密码：'; returns the exit code and everything the terminal showed."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import termios
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        os.execve(sys.executable, [sys.executable, "-m", "pipeline", *args], env)
    seen, typed, deadline = b"", 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child has gone
                break
            if not chunk:
                break
            seen += chunk
            if typed < len(answers) and seen.decode(errors="replace").count("密码：") > typed:
                os.write(fd, answers[typed].encode() + b"\r")
                typed += 1
    if time.monotonic() >= deadline:  # still waiting for an answer it will not get
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")
