"""One writer at a time per catalog: an advisory lock on a file in the catalog directory.

Searches never take it, so they keep working while an ingest runs (SQLite in WAL mode lets
readers see the last committed state). The operating system drops the lock when the process
ends, however it ends, so a crash never leaves a catalog locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from mertsearch.errors import CatalogBusyError

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._handle = None
        self._depth = 0

    @contextmanager
    def held(self, *, wait_s: float = 0.0):
        """Hold the lock (re-entrant within this object); wait up to ``wait_s`` for another writer."""
        if self._depth == 0:
            self._acquire(wait_s)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
                self._handle.close()
                self._handle = None

    def _acquire(self, wait_s: float) -> None:
        handle = open(self.path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    handle.close()
                    raise CatalogBusyError(
                        f"another process (pid {holder}) is writing to the catalog {self.path.parent}; "
                        "wait for it to finish (or pass --wait SECONDS); searching works meanwhile"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
