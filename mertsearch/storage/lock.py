"""One writer at a time per catalog: an advisory lock on a file in the catalog directory.

Ingests into a catalog whose metadata is in a server database (PostgreSQL) take it shared, so
several run at once (the database keeps their transactions apart); everything else takes it alone.

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
        self._mode = fcntl.LOCK_EX

    @property
    def held_here(self) -> bool:
        """Whether this object holds the lock now."""
        return self._depth > 0

    @property
    def held_alone(self) -> bool:
        """Whether this object holds the lock now, and not shared (no other writer is at work)."""
        return self._depth > 0 and self._mode == fcntl.LOCK_EX

    @contextmanager
    def held(self, *, wait_s: float = 0.0, shared: bool = False):
        """Hold the lock (re-entrant within this object, in the mode first taken); wait up to
        ``wait_s`` for another writer. ``shared``: beside other shared holders only."""
        if self._depth == 0:
            self._mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            self._acquire(wait_s, self._mode)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
                self._handle.close()
                self._handle = None

    def _acquire(self, wait_s: float, mode: int) -> None:
        handle = open(self.path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
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
        handle.seek(0)  # one holder's pid (the latest, when several share the lock)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle


def process_ended(pid: int) -> bool:
    """Whether no process of this pid runs on this host (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
