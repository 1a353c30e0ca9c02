"""Small file helpers shared by the model loader and the indexer."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's content, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: False for a file name held with surrogate escapes."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
