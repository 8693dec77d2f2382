"""A child process of `pipeline run` ends with it, however `run` ends.

`run` stops its children on Ctrl+C and SIGTERM; a SIGKILL (the OOM killer, `kill -9`) gives it no
chance to. Its children therefore ask Linux for a signal when their parent dies (prctl's
PR_SET_PDEATHSIG), set from the child itself at start-up, so nothing runs between fork and exec.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_VARIABLE = "PIPELINE_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def parent_marker() -> dict[str, str]:
    """The environment entry a child started by this process needs to end with it."""
    return {PARENT_VARIABLE: str(os.getpid())}


def end_with_parent() -> None:
    """Take SIGTERM when the process that started us (``PIPELINE_PARENT_PID``) dies; when it is
    already gone, now. A no-op outside Linux or when not started by `run`."""
    raw = os.environ.pop(PARENT_VARIABLE, None)  # not handed on to our own children
    if not raw or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not granted: `run` still stops us on Ctrl+C and SIGTERM
    if os.getppid() != int(raw):  # the parent died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
