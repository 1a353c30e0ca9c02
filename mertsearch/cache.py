"""Results worth keeping between runs (weights hashes, precision decisions), in small JSON files.

The cache is only ever a shortcut: a missing, corrupt or unwritable file means the value is computed
again, never an error. It lives in $MERTSEARCH_CACHE_DIR, else $XDG_CACHE_HOME/mertsearch, else
~/.cache/mertsearch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

CACHE_ENV = "MERTSEARCH_CACHE_DIR"
# Entries kept per file, newest last: enough for every model and device a user has, and bounded
# because a weights file that keeps changing at one path would otherwise add one entry per version.
MAX_ENTRIES = 64


def cache_dir() -> Path:
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mertsearch"


def _load(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def lookup(name: str, key: str) -> dict | None:
    """The entry stored under ``key`` in the cache file ``name``, if it is there and a dict."""
    entry = _load(cache_dir() / name).get(key)
    return entry if isinstance(entry, dict) else None


def store(name: str, key: str, entry: dict) -> None:
    """Keep ``entry`` under ``key`` (replacing, and moving to newest); failures are ignored."""
    path = cache_dir() / name
    entries = _load(path)
    entries.pop(key, None)
    entries[key] = entry
    entries = dict(list(entries.items())[-MAX_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the file and renamed over it, so a reader never sees half of it.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(entries, out, indent=1)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError:
        pass
