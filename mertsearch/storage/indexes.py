"""The two FAISS indexes of a catalog, kept in step with the database.

``tracks`` holds one vector per track (ids: track ids) for whole-track similarity; ``windows``
holds every window's vector (ids: window ids) for segment search. Both are derived from the
stored vectors through the catalog's transform, saved under the database's data version, and
rebuilt when missing or stale. Another writer of the same database (PostgreSQL) moves the data
version on by more than this writer's own changes: its indexes are then rebuilt before they are
saved, so a saved file always holds what its version says.

Only the writer (the process holding the catalog's writer lock) saves index files. A reader (a
search, ``info``, a running server) follows the database: it loads the newest saved file, when
that holds vectors of the kind searched now (saved at or after the store's ``searchable_since``),
and adds the rows stored after it (ids above its high-water mark) to a small exact index beside
it, in memory; with no usable file it builds both indexes in memory. Rows removed since stay in
the saved file until the writer saves again, and the search engine drops ids the database no
longer has. A track stored again under its id (its file changed) keeps its older vector in a
reader's index until then (at most a writer's save interval).

With the "auto" factory each index changes kind as it grows (see vector_index.choose_factory);
trained kinds train on a random sample of the stored vectors.
An inverted file whose codes outgrow one shard (sharded.SHARD_BYTES, or ``shard_size`` vectors)
is built in shards and merged on disk (see storage/sharded.py).
"""

from __future__ import annotations

import time
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
from mertsearch.storage.vector_index import FLAT, FLAT_LIMIT, VectorIndex, choose_factory, saved_version

NAMES = ("tracks", "windows")
AUTO = "auto"
__all__ = ["AUTO", "NAMES", "TRAIN_PER_LIST", "Indexes", "SaveSchedule"]


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
        writing: Callable[[], bool] = lambda: True,
    ) -> None:
        self.directory = directory
        # Whether this process holds the writer lock now: only then are index files built and saved.
        self.writing = writing
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
        self._followed = False  # whether a reader loaded them

    def _get(self, name: str) -> VectorIndex:
        if not self.writing():
            return self._follow(name)
        if self._followed:  # loaded by a reader (perhaps mapped, caught up in memory): a writer starts afresh
            self._loaded, self._versions, self._expected, self._followed = {}, {}, None, False
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

    def _follow(self, name: str) -> VectorIndex:
        """A reader's index for the database's current version, never saved (see the module's doc)."""
        version = self.store.data_version()
        if name in self._loaded and self._versions[name] == version:
            return self._loaded[name]
        saved = saved_version(self.directory, name)
        index = None
        if saved is not None and self.store.searchable_since() <= saved <= version:
            index = VectorIndex.load(self.directory, saved, self.dim, name, mmap=self.mmap)
        if index is None:
            index = self._build(name, in_memory=True)
        elif saved < version:
            index = CaughtUp(index, self._recent(name, index.high_water))
        self._loaded[name], self._versions[name] = index, version
        self._followed = True
        return index

    def _recent(self, name: str, after: int) -> VectorIndex:
        """The rows stored after id ``after``, in an exact index."""
        recent = VectorIndex(self.dim, FLAT)
        batches = self.store.track_vectors(after=after) if name == "tracks" else self.store.window_vectors(after=after)
        for ids, vectors in batches:
            recent.add(ids, self.transform(vectors))
        return recent

    @property
    def tracks(self) -> VectorIndex:
        return self._get("tracks")

    @property
    def windows(self) -> VectorIndex:
        return self._get("windows")

    def _wanted(self, count: int) -> str:
        return choose_factory(count) if self.factory == AUTO else self.factory

    def _build(self, name: str, *, in_memory: bool = False) -> VectorIndex:
        """An index of every stored vector; one too big for memory is built in shards merged on disk,
        unless ``in_memory`` (a reader, which writes no file)."""
        count = self.store.count(name)
        index = VectorIndex(self.dim, self._wanted(count))
        batches = self.store.track_vectors() if name == "tracks" else self.store.window_vectors()
        if shardable(index) and count > 0 and not in_memory and (self.shard_size or count > default_shard_size(index)):
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

    def rebuild(self, factory: str | None = None, *, shard_size: int | None = None, announce: bool = False) -> None:
        """Build both indexes again from the stored vectors (no model needed) and save them.

        ``shard_size``: build inverted files in shards of this many vectors, merged on disk.
        ``announce`` moves the data version on first, so readers load the new files (a rebuild
        asked for; not one after another writer's changes, which would answer with its own).
        """
        if factory is not None:
            self.factory = factory
        if shard_size is not None:
            self.shard_size = shard_size
        if announce:  # a version of its own, so readers take up the new files at once
            self.store.update_meta({}, bump_version=True)
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


class CaughtUp:
    """A saved index (perhaps memory-mapped, read-only) and the rows stored since, in a small exact
    index beside it: searched together, as one index, by a reader."""

    def __init__(self, saved: VectorIndex, recent: VectorIndex) -> None:
        self.saved, self.recent = saved, recent

    def __len__(self) -> int:
        return len(self.saved) + len(self.recent)

    def __getattr__(self, name: str):
        return getattr(self.saved, name)  # factory, nprobe, dim, lists_file...: the saved index's

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) as VectorIndex.search, the best ``k`` of both indexes."""
        parts = [
            self.saved.search(queries, k, allowed=allowed, nprobe=nprobe),
            self.recent.search(queries, k, allowed=allowed),
        ]
        scores = np.concatenate([part[0] for part in parts], axis=1)
        ids = np.concatenate([part[1] for part in parts], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(self))]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


class SaveSchedule:
    """When a writer saves its indexes in the middle of an ingest: at most every ``every_s``
    seconds, and never more than ``share`` of the time. A save rewrites whole index files (seconds
    for millions of vectors), so one that took t seconds waits t * (1 - share) / share before the
    next. Readers lose nothing meanwhile: they catch up from the database (see Indexes)."""

    def __init__(self, every_s: float, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.share, self.clock = every_s, share, clock
        self.last = clock()
        self.took = 0.0  # the last save's seconds
        self.total = 0.0  # every save's seconds

    def due(self) -> bool:
        return self.clock() - self.last > max(self.every_s, self.took * (1 - self.share) / self.share)

    def save(self, indexes: Indexes) -> None:
        started = self.clock()
        indexes.save()
        self.last = self.clock()
        self.took = self.last - started
        self.total += self.took
