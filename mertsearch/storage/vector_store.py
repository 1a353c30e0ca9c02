"""Where a catalog's track and window vectors are searched: the interface the rest of the code
uses, and the choice of backend.

FAISS files in the catalog's directory (storage/indexes.py) are the default. A Milvus server, or
Milvus Lite embedded in a local file, holds them instead when the catalog is created with a
vector store URL (storage/milvus.py):

- ``milvus:///path/milvus.db``: Milvus Lite in that file (a relative path is taken from the
  current directory when the catalog is created, and recorded absolute);
- ``http://host:19530`` or ``https://...``: a Milvus server; its token comes from the
  environment variable MERTSEARCH_MILVUS_TOKEN (never from the URL, so the manifest holds no
  secret).

Either way the database stays the source of truth: the vectors are derived from its rows and
can be rebuilt from them.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from mertsearch.errors import InvalidArgumentError

TOKEN_VARIABLE = "MERTSEARCH_MILVUS_TOKEN"
SCHEMES = ("milvus", "http", "https")


class VectorCollection(Protocol):
    """One searchable set of vectors under database ids (the tracks', or the windows')."""

    factory: str  # the kind of index, as `info` shows it
    nprobe: int

    def __len__(self) -> int: ...

    @property
    def lists(self) -> int: ...

    def probes(self, share: float = 1.0) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each shaped (queries, k'), best first; -1 ids pad. ``allowed``: only these ids."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def ids(self) -> np.ndarray: ...


class VectorStores(Protocol):
    """A catalog's two collections, ``tracks`` and ``windows``, kept in step with the database."""

    def load(self) -> None: ...

    def rebuild(self, factory: str | None = None, *, shard_size: int | None = None, announce: bool = False) -> None:
        """Build both again from the stored vectors (no model needed)."""
        ...

    def save(self) -> None:
        """Make what a writer changed visible to every opener (a no-op where writes are at once)."""
        ...

    def finished(self, ok: bool) -> None:
        """A writer's operation ended (``ok``: without an error)."""
        ...

    def stored(self, stored, vector: np.ndarray, window_vectors: np.ndarray) -> None: ...

    def removed(self, track_id: int, window_ids: list[int]) -> None: ...

    def retagged(self, track_id: int) -> None:
        """A track's tags or path changed, its vectors not."""
        ...

    @property
    def tracks(self) -> VectorCollection: ...

    @property
    def windows(self) -> VectorCollection: ...


def collections_prefix() -> str:
    """A prefix for a catalog's two Milvus collections, its own (catalogs may share a server)."""
    import uuid

    return f"mertsearch_{uuid.uuid4().hex[:12]}"


def check_vector_store(url: str) -> str:
    """``url`` checked and made absolute (a Milvus Lite file's path), as the manifest records it."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise InvalidArgumentError(f"a vector store is milvus:///path/milvus.db or http(s)://host:19530, got {url!r}")
    if parts.username or parts.password or "token" in parts.query.lower():
        raise InvalidArgumentError(
            f"give the Milvus token through the {TOKEN_VARIABLE} environment variable, not in the URL"
        )
    from mertsearch.storage.milvus import index_settings

    index_settings(url)  # its parameters are numbers
    if parts.scheme == "milvus":
        from pathlib import Path

        path = parts.netloc + parts.path
        if not path or path.endswith("/"):
            raise InvalidArgumentError(f"a Milvus Lite store names its file: milvus:///path/milvus.db, got {url!r}")
        return "milvus://" + str(Path(path).expanduser().absolute()) + (f"?{parts.query}" if parts.query else "")
    if not parts.hostname:
        raise InvalidArgumentError(f"a Milvus server URL names its host, got {url!r}")
    return url
