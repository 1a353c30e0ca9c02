"""The two FAISS indexes of a catalog, kept in step with the database.

``tracks`` holds one vector per track (ids: track ids) for whole-track similarity; ``windows``
holds every window's vector (ids: window ids) for segment search. Both are derived from the
stored vectors through the catalog's transform, saved under the database's data version, and
rebuilt when missing or stale. Another writer of the same database (PostgreSQL) moves the data
version on by more than this writer's own changes: its indexes are then rebuilt before they are
saved, so a saved file always holds what its version says. With the "auto" factory each index changes kind as it grows
(see vector_index.choose_factory); trained kinds train on a random sample of the stored vectors.
An inverted file whose codes outgrow one shard (sharded.SHARD_BYTES, or ``shard_size`` vectors)
is built in shards and merged on disk (see storage/sharded.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mertsearch.storage.sharded import (
    TRAIN_PER_LIST,
    build_in_shards,
    default_shard_size,
    shardable,
    train_sample_size,
)
from mertsearch.storage.store import MetadataStore, StoredTrack
from mertsearch.storage.vector_index import FLAT, FLAT_LIMIT, VectorIndex, choose_factory

NAMES = ("tracks", "windows")
AUTO = "auto"
__all__ = ["AUTO", "NAMES", "TRAIN_PER_LIST", "Indexes"]


class Indexes:
    def __init__(
        self,
        directory: Path,
        store: MetadataStore,
        *,
        dim: int,
        factory: str,
        transform: Callable[[np.ndarray], np.ndarray],
        mmap: bool = False,
        shard_size: int | None = None,
    ) -> None:
        self.directory = directory
        # Vectors per shard when building an inverted file (None: by bytes, and only when big).
        self.shard_size = shard_size
        self.store = store
        self.dim = dim
        self.factory = factory
        self.transform = transform
        self.mmap = mmap
        self._loaded: dict[str, VectorIndex] = {}
        self._versions: dict[str, int] = {}  # the data version each loaded index was saved for
        # The data version the loaded indexes reflect, counting this process's changes since.
        self._expected: int | None = None

    def _get(self, name: str) -> VectorIndex:
        if name in self._loaded and self.mmap:
            # A reader (search, the server) follows a writer's progress: it maps the index the
            # writer saved for the database's current version as soon as that file exists.
            version = self.store.data_version()
            if version != self._versions[name]:
                newer = VectorIndex.load(self.directory, version, self.dim, name, mmap=True)
                if newer is not None:
                    self._loaded[name], self._versions[name] = newer, version
        if name not in self._loaded:
            version = self.store.data_version()
            index = VectorIndex.load(self.directory, version, self.dim, name, mmap=self.mmap)
            if index is None:
                index = self._build(name)
                index.save(self.directory, version, name)
            self._loaded[name], self._versions[name] = index, version
            if self._expected is not None and self._expected != version:
                self._expected = -1  # loaded at different versions: rebuild both before saving
            elif self._expected is None:
                self._expected = version
        return self._loaded[name]

    @property
    def tracks(self) -> VectorIndex:
        return self._get("tracks")

    @property
    def windows(self) -> VectorIndex:
        return self._get("windows")

    def _wanted(self, count: int) -> str:
        return choose_factory(count) if self.factory == AUTO else self.factory

    def _build(self, name: str) -> VectorIndex:
        count = self.store.count(name)
        index = VectorIndex(self.dim, self._wanted(count))
        batches = self.store.track_vectors() if name == "tracks" else self.store.window_vectors()
        if shardable(index) and count > 0 and (self.shard_size or count > default_shard_size(index)):
            return build_in_shards(
                index,
                directory=self.directory,
                name=name,
                sample=lambda size: self.store.sample_vectors(name, size),
                batches=batches,
                transform=self.transform,
                shard_size=self.shard_size,
            )
        if index.needs_training:
            index.train(self.transform(self.store.sample_vectors(name, train_sample_size(index))))
        for ids, vectors in batches:
            index.add(ids, self.transform(vectors))
        return index

    def _should_change(self, index: VectorIndex) -> bool:
        """With the auto factory: whether the index has outgrown (or shrunk below) its kind."""
        if self.factory != AUTO:
            return False
        wanted = choose_factory(len(index))
        if index.factory == wanted:
            return False
        if index.factory == FLAT:
            return len(index) >= FLAT_LIMIT
        if wanted == FLAT:
            return len(index) < FLAT_LIMIT // 2  # hysteresis: no flip-flop around the limit
        return True  # the number of lists ought to double or halve

    def load(self) -> None:
        """Load (or rebuild) both indexes now: they must reflect the store before it changes."""
        for name in NAMES:
            self._get(name)

    def rebuild(self, factory: str | None = None, *, shard_size: int | None = None) -> None:
        """Build both indexes again from the stored vectors (no model needed) and save them.

        ``shard_size``: build inverted files in shards of this many vectors, merged on disk.
        """
        if factory is not None:
            self.factory = factory
        if shard_size is not None:
            self.shard_size = shard_size
        # Read before building: the built index holds at least this version's rows, never fewer.
        version = self.store.data_version()
        for name in NAMES:
            self._loaded[name], self._versions[name] = self._build(name), version
            self._loaded[name].save(self.directory, version, name)
        self._expected = version

    def stored(self, stored: StoredTrack, vector: np.ndarray, window_vectors: np.ndarray) -> None:
        """Reflect a track put into the store (new, or replacing its older version)."""
        tracks, windows = self.tracks, self.windows
        if stored.replaced:
            tracks.remove(np.array([stored.track_id]))
            windows.remove(np.array(stored.old_window_ids))
        tracks.add(np.array([stored.track_id]), self.transform(vector[None, :]))
        windows.add(np.array(stored.window_ids), self.transform(window_vectors))
        self._count_change()

    def removed(self, track_id: int, window_ids: list[int]) -> None:
        self.tracks.remove(np.array([track_id]))
        self.windows.remove(np.array(window_ids))
        self._count_change()

    def _count_change(self) -> None:
        """One change of this process (put_track and delete_track each move the version on by one)."""
        if self._expected is not None and self._expected >= 0:
            self._expected += 1

    def save(self) -> None:
        """Save what changed; an index that outgrew its kind is rebuilt as the kind its size calls for.

        When the database moved on by more than this process's changes, another writer changed
        it: both indexes are built again from the stored vectors, which hold every writer's tracks.
        """
        version = self.store.data_version()
        if self._loaded and version != self._expected:
            self.rebuild()
            return
        for name, index in list(self._loaded.items()):
            if self._should_change(index):
                index = self._loaded[name] = self._build(name)
            index.save(self.directory, version, name)
            self._versions[name] = version
