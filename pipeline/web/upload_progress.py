"""How far an upload has come, for the browser's progress bars: rows read, validated, applied.

The page names its upload with a random id; the request that receives the file reports here as
it parses and validates (the ``progress`` callback of ``receive_file``) and once the batch is
recorded; ``GET /upload/progress?id=…`` reads it, and the batch's own row in the database says how
many rows are applied (on embedded defaults before the answer, with workers a little after).
Entries belong to the user who started them and are forgotten after an hour.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
KEEP_SECONDS = 3600
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class UploadStage:
    stage: str = "upload"  # upload | read | validate | record | apply | done | failed
    total: int | None = None  # rows in the file, once read
    validated: int = 0
    batch_id: int | None = None
    message: str | None = None


class UploadProgress:
    """Thread-safe: the upload runs in a worker thread while the page polls."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], tuple[float, UploadStage]] = {}
        self._clock = clock

    @staticmethod
    def valid(upload_id: str | None) -> bool:
        return bool(upload_id) and ID_PATTERN.fullmatch(upload_id or "") is not None

    def _put(self, key: tuple[int, str], stage: UploadStage) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < KEEP_SECONDS}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (now, stage)

    def update(self, user_id: int, upload_id: str, **changes: object) -> None:
        key = (user_id, upload_id)
        with self._lock:
            current = self._entries.get(key, (0.0, UploadStage()))[1]
        self._put(key, replace(current, **changes))  # type: ignore[arg-type]

    def get(self, user_id: int, upload_id: str) -> UploadStage | None:
        with self._lock:
            found = self._entries.get((user_id, upload_id))
        if found is None or self._clock() - found[0] > KEEP_SECONDS:
            return None
        return found[1]

    def reporter(self, user_id: int, upload_id: str | None) -> Callable[[int, int], None] | None:
        """The ``progress(done, total)`` callback for ``receive_file`` (None without a valid id)."""
        if upload_id is None or not self.valid(upload_id):
            return None
        key = upload_id

        def report(done: int, total: int) -> None:
            self.update(user_id, key, stage="validate", total=total, validated=done)

        return report
