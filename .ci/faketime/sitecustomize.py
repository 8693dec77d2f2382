"""Loaded by every Python process of a `.ci/at-date` run (and only there, through PYTHONPATH).

libfaketime 0.9.10 (Debian's) and Python 3.11 disagree on the monotonic clock: with it moved,
Python's timed waits (Event.wait, Lock.acquire with a timeout) compute their deadline on the moved
clock and wait decades (libfaketime issue #390); left alone (--exclude-monotonic), time.sleep's
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) gets a negative deadline and fails with EINVAL
(issue #426). .ci/at-date leaves the monotonic clock alone, and this sleeps through select()
instead: the same wait, by a call libfaketime leaves be. Nothing of the product changes.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
