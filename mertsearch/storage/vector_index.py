"""A FAISS index of track or window vectors, whose ids are the database's track or window ids.

The index is derived data: it can always be rebuilt from the vectors stored in the database.
Each saved file is named after the database's data version it reflects, and files are replaced
atomically, so a reader never sees a half-written index nor mistakes a stale one for current.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import faiss
import numpy as np

DEFAULT_FACTORY = "IDMap2,Flat"
_FILE = re.compile(r"^(tracks|windows)-v(\d+)\.faiss$")


class VectorIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosine similarities)."""

    def __init__(self, dim: int, factory: str = DEFAULT_FACTORY, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.factory = factory
        self.index = index if index is not None else faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, params: faiss.SearchParameters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each shaped (queries, k'), k' = min(k, size); best first; -1 ids pad."""
        k = min(k, len(self))
        if k == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        vectors = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(vectors, k, params=params) if params is not None else self.index.search(vectors, k)

    def save(self, directory: Path, version: int, name: str = "tracks") -> Path:
        """Write the index ``name`` for data ``version`` atomically and drop its files of other versions."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{name}-v{version}.faiss"
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-", suffix=".tmp")
        os.close(handle)
        try:
            faiss.write_index(self.index, tmp)
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for other in directory.iterdir():
            found = _FILE.match(other.name)
            if found and found.group(1) == name and int(found.group(2)) != version:
                other.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, directory: Path, version: int, dim: int, factory: str, name: str = "tracks") -> VectorIndex | None:
        """The saved index ``name`` for data ``version``, or None when there is none (rebuild it)."""
        path = directory / f"{name}-v{version}.faiss"
        if not path.is_file():
            return None
        index = faiss.read_index(str(path))
        if index.d != dim:
            return None
        return cls(dim, factory, index=index)


def saved_index_file(directory: Path, name: str = "tracks") -> Path | None:
    """The newest saved file of index ``name`` in ``directory``, if any."""
    if not directory.is_dir():
        return None
    files = [(int(m.group(2)), p) for p in directory.iterdir() if (m := _FILE.match(p.name)) and m.group(1) == name]
    return max(files)[1] if files else None
