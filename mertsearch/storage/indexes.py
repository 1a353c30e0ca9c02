"""The two FAISS indexes of a catalog, kept in step with the database.

``tracks`` holds one vector per track (ids: track ids) for whole-track similarity; ``windows``
holds every window's vector (ids: window ids) for segment search. Both are derived from the
stored vectors through the catalog's transform, saved under the database's data version, and
rebuilt when missing or stale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mertsearch.storage.store import MetadataStore, StoredTrack
from mertsearch.storage.vector_index import VectorIndex

NAMES = ("tracks", "windows")


class Indexes:
    def __init__(
        self,
        directory: Path,
        store: MetadataStore,
        *,
        dim: int,
        factory: str,
        transform: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.directory = directory
        self.store = store
        self.dim = dim
        self.factory = factory
        self.transform = transform
        self._loaded: dict[str, VectorIndex] = {}

    def _get(self, name: str) -> VectorIndex:
        if name not in self._loaded:
            version = self.store.data_version()
            index = VectorIndex.load(self.directory, version, self.dim, self.factory, name)
            if index is None:
                index = self._build(name)
                index.save(self.directory, version, name)
            self._loaded[name] = index
        return self._loaded[name]

    @property
    def tracks(self) -> VectorIndex:
        return self._get("tracks")

    @property
    def windows(self) -> VectorIndex:
        return self._get("windows")

    def _build(self, name: str) -> VectorIndex:
        index = VectorIndex(self.dim, self.factory)
        batches = self.store.track_vectors() if name == "tracks" else self.store.window_vectors()
        for ids, vectors in batches:
            index.add(ids, self.transform(vectors))
        return index

    def load(self) -> None:
        """Load (or rebuild) both indexes now: they must reflect the store before it changes."""
        for name in NAMES:
            self._get(name)

    def rebuild(self) -> None:
        """Build both indexes again from the stored vectors (no model needed) and save them."""
        version = self.store.data_version()
        for name in NAMES:
            self._loaded[name] = self._build(name)
            self._loaded[name].save(self.directory, version, name)

    def stored(self, stored: StoredTrack, vector: np.ndarray, window_vectors: np.ndarray) -> None:
        """Reflect a track put into the store (new, or replacing its older version)."""
        tracks, windows = self.tracks, self.windows
        if stored.replaced:
            tracks.remove(np.array([stored.track_id]))
            windows.remove(np.array(stored.old_window_ids))
        tracks.add(np.array([stored.track_id]), self.transform(vector[None, :]))
        windows.add(np.array(stored.window_ids), self.transform(window_vectors))

    def removed(self, track_id: int, window_ids: list[int]) -> None:
        self.tracks.remove(np.array([track_id]))
        self.windows.remove(np.array(window_ids))

    def save(self) -> None:
        version = self.store.data_version()
        for name, index in self._loaded.items():
            index.save(self.directory, version, name)
