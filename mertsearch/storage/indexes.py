"""The two FAISS indexes of a catalog, kept in step with the database.

``tracks`` holds one vector per track (ids: track ids) for whole-track similarity; ``windows``
holds every window's vector (ids: window ids) for segment search. Both are derived from the
stored vectors through the catalog's transform and saved under the database's data version.

Whoever opens them (a writer or a reader) starts from the newest saved file and adds the rows
stored after it (ids above the highest id it holds) to a small exact index beside it
(:class:`Layered`). A saved file serves so only while it holds vectors of the kind searched now
(saved at or after the store's ``searchable_since``); a writer also needs that nothing was taken
out since it was saved (the store's ``removed_at``); otherwise both are built from the stored
vectors. A saved file therefore need not be rewritten for every change: a writer's save is
skipped while the rows added since the file are few beside it (CATCH_UP_SHARE) and nothing was
taken out, so saving costs what changed. What a writer takes out is left out of its searches at
once, and written when it saves: the file is rewritten then.

Another writer of the same database (PostgreSQL) moves the data version on by more than this
writer's own changes: its indexes are then rebuilt before they are saved, so a saved file always
holds what its version says.

Only the writer (the process holding the catalog's writer lock) saves index files. A reader (a
search, ``info``, a running server) never writes: with no usable file it builds both indexes in
memory. It keeps a saved file it loaded while no newer one is saved, and does not ask whether
rows were taken out since: rows removed since stay in its index until the writer saves again,
and the search engine drops ids the database no longer has; a track stored again under its id
(its file changed) keeps its older vector in a reader's index until then.

With the "auto" factory each index changes kind as it grows (see vector_index.choose_factory);
trained kinds train on a random sample of the stored vectors.
An inverted file whose codes outgrow one shard (sharded.SHARD_BYTES, or ``shard_size`` vectors)
is built in shards and merged on disk (see storage/sharded.py), on a bounded sample and from the
store's vectors streamed in batches: a build holds one shard and one batch, never every vector.
Rows added to it stay beside it; a save that must rewrite it merges the base's lists and the rows
added since into a new lists file on disk (sharded.rewrite_on_disk), so that holds no more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np

from mertsearch.storage.sharded import (
    TRAIN_PER_LIST,
    build_in_shards,
    default_shard_size,
    rewrite_on_disk,
    shardable,
    train_sample_size,
)
from mertsearch.storage.store import MetadataStore, StoredTrack
from mertsearch.storage.vector_index import FLAT, FLAT_LIMIT, VectorIndex, choose_factory, saved_version

NAMES = ("tracks", "windows")
AUTO = "auto"
# A writer rewrites a saved file when the rows added since outgrow this share of it (each opener
# adds them from the database, into an exact index, until then).
CATCH_UP_SHARE = 0.05
__all__ = ["AUTO", "CATCH_UP_SHARE", "NAMES", "TRAIN_PER_LIST", "Indexes", "Layered", "SaveSchedule"]


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
        self._loaded: dict[str, Layered] = {}
        self._versions: dict[str, int] = {}  # the data version each loaded index reflects
        # The saved file (or in-memory build) each loaded index starts from: (its data version, it).
        self._bases: dict[str, tuple[int, VectorIndex]] = {}
        # The data version the loaded indexes reflect, counting this process's changes since.
        self._expected: int | None = None
        self._followed = False  # whether a reader loaded them

    def _get(self, name: str) -> Layered:
        if not self.writing():
            return self._follow(name)
        if self._followed:  # loaded by a reader (perhaps mapped): a writer starts afresh
            self._loaded, self._versions, self._bases, self._expected, self._followed = {}, {}, {}, None, False
        if name not in self._loaded:
            version = self.store.data_version()
            self._loaded[name], self._versions[name] = self._open(name, version, writer=True), version
            if self._expected is not None and self._expected != version:
                self._expected = -1  # loaded at different versions: rebuild both before saving
            elif self._expected is None:
                self._expected = version
        return self._loaded[name]

    def _follow(self, name: str) -> Layered:
        """A reader's index for the database's current version, never saved (see the module's doc)."""
        version = self.store.data_version()
        if name not in self._loaded or self._versions[name] != version:
            self._loaded[name], self._versions[name] = self._open(name, version, writer=False), version
            self._followed = True
        return self._loaded[name]

    def _open(self, name: str, version: int, *, writer: bool) -> Layered:
        """The newest base usable at ``version`` with the rows stored since beside it; else every
        stored vector, built (and saved, by a writer)."""
        found = self._base(name, version, strict=writer, kept=self._bases.get(name))
        if found is None:
            found = (version, self._build(name, in_memory=not writer))
            if writer:
                found[1].save(self.directory, version, name)
        self._bases[name] = found
        previous = self._loaded.get(name)
        if not writer and previous is not None and previous.base is found[1]:
            # The same base as before (a reader following an ingest): only the rows stored since
            # the last look are read, not every row since the base.
            self._add_rows(previous.recent, name, after=previous.high_water)
            return previous
        return self._layered(name, *found, version)

    def saved(self, name: str) -> Layered | None:
        """What a writer would open now without building anything: the usable saved file and the
        rows stored since (None: there is no such file). For checks, which must not build."""
        version = self.store.data_version()
        found = self._base(name, version, strict=True)
        return None if found is None else self._layered(name, *found, version)

    def _base(
        self, name: str, version: int, *, strict: bool, kept: tuple[int, VectorIndex] | None = None
    ) -> tuple[int, VectorIndex] | None:
        """(data version, index) of the newest base usable at ``version``: the newest saved file, or
        ``kept`` (a base this reader loaded or built before) when that is newer. ``strict`` (a
        writer) also needs that nothing was taken out since the base."""
        saved = saved_version(self.directory, name)
        oldest = max(self.store.searchable_since(), self.store.removed_at() if strict else 0)
        if kept is not None and oldest <= kept[0] <= version and (saved is None or kept[0] >= saved):
            return kept
        if saved is not None and oldest <= saved <= version:
            base = VectorIndex.load(self.directory, saved, self.dim, name, mmap=self.mmap)
            return None if base is None else (saved, base)
        return None

    def _layered(self, name: str, since: int, base: VectorIndex, version: int) -> Layered:
        recent = self._recent(name, base.high_water) if since < version else VectorIndex(self.dim, FLAT)
        return Layered(base, recent)

    def _recent(self, name: str, after: int) -> VectorIndex:
        """The rows stored after id ``after``, in an exact index."""
        recent = VectorIndex(self.dim, FLAT)
        self._add_rows(recent, name, after=after)
        return recent

    def _add_rows(self, index: VectorIndex, name: str, *, after: int) -> None:
        batches = self.store.track_vectors(after=after) if name == "tracks" else self.store.window_vectors(after=after)
        for ids, vectors in batches:
            index.add(ids, self.transform(vectors))

    @property
    def tracks(self) -> Layered:
        return self._get("tracks")

    @property
    def windows(self) -> Layered:
        return self._get("windows")

    def _wanted(self, count: int) -> str:
        return choose_factory(count) if self.factory == AUTO else self.factory

    def _build(self, name: str, *, in_memory: bool = False) -> VectorIndex:
        """An index of every stored vector; one too big for memory is built in shards merged on disk,
        unless ``in_memory`` (a reader, which writes no file)."""
        count = self.store.count(name)
        index = VectorIndex(self.dim, self._wanted(count))
        batches = self.store.track_vectors() if name == "tracks" else self.store.window_vectors()

        def sample(size: int) -> np.ndarray:
            return self.store.sample_vectors(name, size, transform=self.transform)

        if shardable(index) and count > 0 and not in_memory and (self.shard_size or count > default_shard_size(index)):
            return build_in_shards(
                index,
                directory=self.directory,
                name=name,
                sample=sample,
                batches=batches,
                transform=self.transform,
                shard_size=self.shard_size,
            )
        if index.needs_training:
            index.train(sample(train_sample_size(index)))
        for ids, vectors in batches:
            index.add(ids, self.transform(vectors))
        return index

    def _should_change(self, index: Layered) -> bool:
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

    def rebuild(
        self,
        factory: str | None = None,
        *,
        shard_size: int | None = None,
        announce: bool = False,
        names: Sequence[str] = NAMES,
    ) -> None:
        """Build both indexes (or those ``names``) again from the stored vectors (no model needed) and save them.

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
            if name in names:
                self._based_on(name, self._build(name), version)
            else:  # opened again when next used: its saved file and the rows since, at this version
                self._loaded.pop(name, None)
        self._expected = version

    def _based_on(self, name: str, base: VectorIndex, version: int) -> None:
        """Save ``base`` as index ``name`` of data ``version`` and search it from now on."""
        base.save(self.directory, version, name)
        self._bases[name] = (version, base)
        self._loaded[name], self._versions[name] = Layered(base, VectorIndex(self.dim, FLAT)), version

    def stored(self, stored: StoredTrack, vector: np.ndarray, window_vectors: np.ndarray) -> None:
        """Reflect a track put into the store (new, or replacing its older version)."""
        tracks, windows = self.tracks, self.windows
        if stored.replaced:
            tracks.remove(np.array([stored.track_id]))
            windows.remove(np.array(stored.old_window_ids))
        tracks.add(np.array([stored.track_id]), self.transform(vector[None, :]))
        windows.add(np.array(stored.window_ids), self.transform(window_vectors))
        self._count_change()

    def retagged(self, track_id: int) -> None:
        """Nothing to do: FAISS holds vectors only, and a track's tags or path changed, not those."""

    def removed(self, track_id: int, window_ids: list[int]) -> None:
        self.tracks.remove(np.array([track_id]))
        self.windows.remove(np.array(window_ids))
        self._count_change()

    def finished(self, ok: bool) -> None:
        """Nothing to do: the files follow the database by themselves (see the module's doc)."""

    def _count_change(self) -> None:
        """One change of this process (put_track and delete_track each move the version on by one)."""
        if self._expected is not None and self._expected >= 0:
            self._expected += 1

    def save(self) -> None:
        """Make the saved files serve every opener: rewrite a file when rows were taken out of it,
        or when the rows added since it outgrow CATCH_UP_SHARE of it (openers add fewer from the
        database themselves); an index that outgrew its kind is built again as the kind its size
        calls for, and an index merged on disk is built again in shards.

        When the database moved on by more than this process's changes, another writer changed
        it: both indexes are built again from the stored vectors, which hold every writer's tracks.
        """
        version = self.store.data_version()
        if self._loaded and version != self._expected:
            self.rebuild()
            return
        removed_at = self.store.removed_at()
        for name, index in list(self._loaded.items()):
            since = self._bases[name][0]
            if self._should_change(index):
                self._based_on(name, self._build(name), version)
            elif index.excluded or removed_at > since or len(index.recent) > CATCH_UP_SHARE * len(index.base):
                self._based_on(name, self._merged(name, index), version)
            self._versions[name] = version

    def _merged(self, name: str, index: Layered) -> VectorIndex:
        """``index`` as one index to save. An inverted file merged on disk, or one that outgrows a
        shard, is merged on disk again (see sharded.rewrite_on_disk): taking its lists into memory
        would make a writer's saves, the last of a large ingest's among them, hold every code."""
        base = index.base
        if shardable(base) and (
            self.shard_size or base.lists_file is not None or len(index) > default_shard_size(base)
        ):
            removed = np.fromiter(index.excluded, np.int64, count=len(index.excluded))
            added = index.recent_rows()
            return rewrite_on_disk(base, added=added, removed=removed, directory=self.directory, name=name)
        return index.merged()


class Layered:
    """A base index (a saved file, perhaps memory-mapped and read-only) and the rows added since, in
    a small exact index beside it, searched as one index. Rows a writer takes out of the base are
    left out of its searches until :meth:`merged` takes them out."""

    def __init__(self, base: VectorIndex, recent: VectorIndex) -> None:
        self.base, self.recent = base, recent
        self.excluded: set[int] = set()  # ids taken out of the base

    def __len__(self) -> int:
        return len(self.base) - len(self.excluded) + len(self.recent)

    def __getattr__(self, name: str):
        return getattr(self.base, name)  # factory, nprobe, lists, probes, dim, lists_file...: the base's

    @property
    def changed(self) -> bool:
        return bool(self.excluded) or len(self.recent) > 0

    @property
    def high_water(self) -> int:
        return max(self.base.high_water, self.recent.high_water)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.recent.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        self.recent.remove(ids)
        # Ids above the base's highest were added since: only the recent rows held them.
        self.excluded.update(int(i) for i in ids if i <= self.base.high_water)

    def ids(self) -> np.ndarray:
        held = self.base.ids()
        if self.excluded:
            held = held[~np.isin(held, np.fromiter(self.excluded, np.int64))]
        return np.concatenate([held, self.recent.ids()])

    def part_of(self, track_or_window_id: int) -> VectorIndex:
        """The index that holds this id, if any holds it: the recent rows' or the base."""
        return self.recent if track_or_window_id > self.base.high_water else self.base

    def merged(self) -> VectorIndex:
        """The base with the rows taken out and the recent rows in: one index, to save."""
        base = self.base
        if self.excluded:
            base.remove(np.fromiter(self.excluded, np.int64))
        if len(self.recent):
            base.add(*self.recent_rows())
        return base

    def recent_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the rows added since the base, as the index holds them."""
        ids = self.recent.ids()
        if not len(ids):
            return ids, np.empty((0, self.base.dim), np.float32)
        flat = faiss.downcast_index(faiss.downcast_index(self.recent.index).index)
        return ids, flat.reconstruct_n(0, len(ids))  # in the order of ids()

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) as VectorIndex.search, the best ``k`` of both indexes."""
        excluded = np.fromiter(self.excluded, np.int64) if self.excluded else None
        parts = [self.base.search(queries, k, allowed=allowed, nprobe=nprobe, excluded=excluded)]
        if len(self.recent):
            parts.append(self.recent.search(queries, k, allowed=allowed))
        scores = np.concatenate([part[0] for part in parts], axis=1)
        ids = np.concatenate([part[1] for part in parts], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(self))]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


class SaveSchedule:
    """When a writer saves its indexes in the middle of an ingest: at most every ``every_s``
    seconds, and never more than ``share`` of the time. A save that rewrites index files takes
    seconds for millions of vectors, so one that took t seconds waits t * (1 - share) / share
    before the next. Readers lose nothing meanwhile: they catch up from the database (see Indexes)."""

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
