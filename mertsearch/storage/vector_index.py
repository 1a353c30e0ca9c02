"""A FAISS index of track or window vectors, whose ids are the database's track or window ids.

The index is derived data: it can always be rebuilt from the vectors stored in the database.
Each saved file is named after the database's data version it reflects, and files are replaced
atomically, so a reader never sees a half-written index nor mistakes a stale one for current.

Kinds: exact search ("IDMap2,Flat") while an index is small; past that an inverted file with
8-bit scalar quantisation ("IVF<lists>,SQ8": a quarter of the memory, and it supports removal),
whose candidates the search engine re-scores exactly from the stored vectors. Any FAISS factory
string may be given instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from mertsearch.errors import InvalidArgumentError
from mertsearch.storage.lock import process_ended

FLAT = "IDMap2,Flat"
DEFAULT_FACTORY = FLAT
# Up to this many vectors exact search stays fast (about 4 ms a query at 768 dims on 2 cores).
FLAT_LIMIT = 50_000
# A temporary file this old is a killed writer's leftover, not another writer's save in progress.
STALE_TMP_S = 3600.0
_FILE = re.compile(r"^(tracks|windows)-v(\d+)\.faiss$")
# The inverted lists of an index built in shards and merged on disk (see storage/sharded.py).
_LISTS = re.compile(r"^(tracks|windows)-[0-9a-f]+\.ivfdata$")


def choose_factory(count: int) -> str:
    """The automatic kind for ``count`` vectors: exact while small, then IVF-SQ8 with ~4*sqrt(n) lists."""
    return FLAT if count < FLAT_LIMIT else f"IVF{ivf_lists(count)},SQ8"


def ivf_lists(count: int) -> int:
    """Inverted lists for ``count`` vectors: ~4*sqrt(n), a power of two, and (as FAISS wants) at
    least 39 training points per list."""
    lists = min(2 ** round(math.log2(4 * math.sqrt(count))), 65536)
    return max(1, min(lists, count // 39))


def probes_for(lists: int) -> int:
    """Lists probed per query: enough for recall@10 >= 0.95 after exact re-scoring (see bench/index.py)."""
    return max(16, lists // 64)


def default_nprobe(index: faiss.Index) -> int:
    return probes_for(getattr(faiss.extract_index_ivf(index), "nlist", 0) if _is_ivf(index) else 0)


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def describe(index: faiss.Index) -> str:
    """A factory string for a loaded index (for reports and to decide whether to change kind)."""
    if _is_ivf(index):
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        name = type(ivf).__name__
        if name == "IndexIVFScalarQuantizer":
            code = {
                faiss.ScalarQuantizer.QT_8bit: "SQ8",
                faiss.ScalarQuantizer.QT_4bit: "SQ4",
                faiss.ScalarQuantizer.QT_fp16: "SQfp16",
            }.get(ivf.sq.qtype, "SQ")
        elif name == "IndexIVFPQ":
            code = f"PQ{ivf.pq.M}"
        else:
            code = {"IndexIVFFlat": "Flat"}.get(name, name)
        return f"IVF{ivf.nlist},{code}"
    return FLAT if isinstance(faiss.downcast_index(index), faiss.IndexIDMap2) else type(index).__name__


class VectorIndex:
    """Inner-product search over L2-normalised vectors (so scores are cosine similarities)."""

    def __init__(
        self, dim: int, factory: str = DEFAULT_FACTORY, index: faiss.Index | None = None, read_only: bool = False
    ) -> None:
        self.dim = dim
        try:
            self.index = index if index is not None else faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"FAISS cannot build an index from {factory!r}: {exc}") from None
        self.factory = describe(self.index)
        self.read_only = read_only
        self.nprobe = default_nprobe(self.index)
        self._gpu: faiss.Index | None = None
        # The highest id ever added (None: not known yet for a loaded index; see high_water).
        self._high_water: int | None = -1 if index is None else None

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.nprobe = default_nprobe(self.index)

    @property
    def lists_file(self) -> Path | None:
        """The file holding the inverted lists of an index merged on disk (None: they are in the index)."""
        lists = on_disk_lists(self.index)
        return Path(lists.filename) if lists is not None else None

    def _writable(self) -> None:
        if self.read_only:  # a memory-mapped index aborts the process when changed: refuse first
            raise InvalidArgumentError("this index was opened read-only (memory-mapped)")
        if on_disk_lists(self.index) is not None:
            # Never change a published lists file in place (readers map it): take the lists into
            # memory; the next save writes an ordinary index file, a rebuild merges on disk again.
            lists_to_memory(self.index)
        self._gpu = None

    @property
    def high_water(self) -> int:
        """The highest id added to this index (-1: none): rows above it came later (see Indexes)."""
        if self._high_water is None:
            held = index_ids(self)
            self._high_water = int(held.max()) if len(held) else -1
        return self._high_water

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._writable()
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._high_water = max(self.high_water, int(np.max(ids)))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._writable()
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
            if self._high_water is not None and int(np.max(ids)) >= self._high_water:
                # Found again from the ids when asked: a saved index records the highest id it
                # holds, and SQLite gives the id of a deleted last row to the next one.
                self._high_water = None

    def ids(self) -> np.ndarray:
        """Every id the index holds."""
        return index_ids(self)

    @property
    def lists(self) -> int:
        """Inverted lists (1 for a kind without them, which every search scans whole)."""
        return faiss.extract_index_ivf(self.index).nlist if _is_ivf(self.index) else 1

    def probes(self, share: float = 1.0) -> int:
        """Lists to probe when only ``share`` of the vectors may be results: ``nprobe`` divided by
        the share, up to all lists, so a filtered search meets about as many allowed vectors as a
        plain one meets vectors."""
        return min(self.lists, math.ceil(self.nprobe / min(share, 1.0))) if share > 0 else self.lists

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        *,
        nprobe: int | None = None,
        excluded: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each shaped (queries, k'), k' = min(k, size); best first; -1 ids pad.

        ``allowed`` restricts the search to those ids, and ``excluded`` leaves those out (FAISS
        id selectors, so the k results all come from the rest). An inverted file searches
        ``nprobe`` of its lists, and its selector sees only those. Unless ``nprobe`` is given, the
        search therefore starts with ``probes(allowed share)`` lists and probes four times as
        many while a query has fewer than k results, up to all lists: k results come back
        whenever the index holds k allowed ids, wherever they sit.
        """
        k = min(k, len(self))
        if k == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        if allowed is not None and not len(allowed):  # nothing to find: no list probed
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        vectors = np.ascontiguousarray(queries, dtype=np.float32)
        chosen = None if allowed is None else faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        selector = chosen
        if excluded is not None and len(excluded):
            # The selectors refer to each other: all of them stay referenced here until the search ends.
            left_out = faiss.IDSelectorBatch(np.asarray(excluded, dtype=np.int64))
            others = faiss.IDSelectorNot(left_out)
            selector = others if chosen is None else faiss.IDSelectorAnd(chosen, others)
        if not _is_ivf(self.index):
            if selector is None:
                return self._searcher().search(vectors, k)
            return self.index.search(vectors, k, params=faiss.SearchParameters(sel=selector))
        if nprobe is not None:
            return self._search_lists(vectors, k, selector, nprobe)
        wanted = k if allowed is None else min(k, len(allowed))
        probes = self.probes(1.0 if allowed is None else len(allowed) / len(self))
        while True:
            scores, ids = self._search_lists(vectors, k, selector, probes)
            if probes >= self.lists or (ids >= 0).sum(axis=1).min() >= wanted:
                return scores, ids
            probes = min(4 * probes, self.lists)

    def _search_lists(
        self, vectors: np.ndarray, k: int, selector: faiss.IDSelector | None, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF(nprobe=max(1, min(nprobe, self.lists)), sel=selector)
        return self.index.search(vectors, k, params=params)

    def _searcher(self) -> faiss.Index:
        """The index itself, or a copy on the GPUs when FAISS sees any (plain searches only)."""
        if self._gpu is None and faiss.get_num_gpus() > 0 and not self.read_only:
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu if self._gpu is not None else self.index

    def save(self, directory: Path, version: int, name: str = "tracks") -> Path:
        """Write the index ``name`` for data ``version`` atomically and drop its files of older versions."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{name}-v{version}.faiss"
        # Half-written files of a writer that was killed (old ones: another writer may be saving now).
        for stale in directory.glob(f".{name}-*.tmp"):
            if _abandoned(stale, name, own=False):  # this process's other threads may be saving
                stale.unlink(missing_ok=True)
        lists = self._publish_lists(directory, name)
        # Beside the index (written first, so an index file always has it): the highest id it holds.
        sidecar = json.dumps({"high_water": self.high_water})
        _write_atomically(directory, name, _sidecar(directory, name, version), sidecar)
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-{os.getpid()}-", suffix=".tmp")
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
            # Only older versions: a concurrent writer may have saved a newer one meanwhile.
            if found and found.group(1) == name and int(found.group(2)) < version:
                other.unlink(missing_ok=True)
                _sidecar(directory, name, int(found.group(2))).unlink(missing_ok=True)
            found = _LISTS.match(other.name)
            if found and found.group(1) == name and other != lists:
                other.unlink(missing_ok=True)  # readers that map it keep their mapping
        remove_build_folders(directory, name)
        return target

    def _publish_lists(self, directory: Path, name: str) -> Path | None:
        """Move the lists file of an index merged on disk beside the index files and flush it to disk."""
        lists = on_disk_lists(self.index)
        if lists is None:
            return None
        current = Path(lists.filename)
        if current.parent != directory or not _LISTS.match(current.name) or not current.name.startswith(name):
            target = directory / f"{name}-{secrets.token_hex(6)}.ivfdata"
            os.replace(current, target)  # the mapping follows the file; the name is for the index header
            lists.filename = str(target)
            current = target
        with open(current, "rb") as written:
            os.fsync(written.fileno())
        return current

    @classmethod
    def load(
        cls, directory: Path, version: int, dim: int, name: str = "tracks", *, mmap: bool = False
    ) -> VectorIndex | None:
        """The saved index ``name`` for data ``version``, or None when there is none or it cannot be
        read (rebuild it: the database holds every vector).

        ``mmap`` maps the file instead of reading it (fast start for large indexes; read-only).
        """
        path = directory / f"{name}-v{version}.faiss"
        if not path.is_file():
            return None
        try:
            # Inverted lists stay mapped, not read: an index merged on disk keeps them in a lists
            # file beside it (found by name, so a moved catalog works), others in the index file.
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
            lists = on_disk_lists(index)
            if lists is not None:
                lists.filename = str(directory / Path(lists.filename).name)
                lists.read_only = True
                lists.do_mmap()
            elif not mmap and _is_ivf(index):
                lists_to_memory(index)  # a writer changes them
        except RuntimeError:  # damaged or missing on disk
            return None
        if index.d != dim:
            return None
        loaded = cls(dim, index=index, read_only=mmap)
        try:
            loaded._high_water = int(json.loads(_sidecar(directory, name, version).read_text())["high_water"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an index saved before sidecars: its ids tell, when asked
        return loaded


def _sidecar(directory: Path, name: str, version: int) -> Path:
    return directory / f"{name}-v{version}.json"


def _write_atomically(directory: Path, name: str, target: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def index_ids(index: VectorIndex) -> np.ndarray:
    """Every id an index holds (IDMap2 keeps them in id_map; an inverted file in its lists)."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIDMap2):
        return faiss.vector_to_array(inner.id_map)
    ivf = faiss.extract_index_ivf(index.index)
    lists = ivf.invlists
    return np.concatenate(
        [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)]
        or [np.empty(0, np.int64)]
    ).astype(np.int64)


def on_disk_lists(index: faiss.Index):
    """The OnDiskInvertedLists of an IVF index merged on disk, or None."""
    if not _is_ivf(index):
        return None
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    # Lists mapped from the index file itself (IO_FLAG_MMAP) have no file name of their own.
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) and lists.filename else None


def lists_to_memory(index: faiss.Index) -> None:
    """Copy an IVF index's inverted lists (mapped from a file) into memory."""
    ivf = faiss.extract_index_ivf(index)
    source = ivf.invlists
    copy = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for number in range(ivf.nlist):
        size = source.list_size(number)
        if size:
            copy.add_entries(number, size, source.get_ids(number), source.get_codes(number))
    ivf.replace_invlists(copy, True)
    copy.this.disown()  # the index owns it now


def remove_saved(directory: Path, name: str) -> None:
    """Every saved file of the index ``name`` (the catalog's vectors moved to another store)."""
    for pattern in (f"{name}-v*.faiss", f"{name}-v*.json", f"{name}-*.ivfdata"):
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)


def remove_build_folders(directory: Path, name: str) -> None:
    """Folders of sharded builds that were interrupted (see _abandoned)."""
    for folder in directory.glob(f".{name}-build-*"):
        if _abandoned(folder, name, own=True):  # this process's own is done once its index is saved
            shutil.rmtree(folder, ignore_errors=True)


def _abandoned(path: Path, name: str, *, own: bool) -> bool:
    """Whether a temporary file or build folder (named ``.{name}[-build]-{pid}-...``) was left by a
    writer that stopped: one of a process that is gone, this process's own if ``own``, or any
    untouched for an hour (a live build writes a shard every few seconds). Another live writer's
    (PostgreSQL) stays."""
    found = re.match(rf"^\.{name}-(?:build-)?(\d+)-", path.name)
    try:
        if time.time() - path.stat().st_mtime > STALE_TMP_S:
            return True
    except OSError:
        return False
    if found is None:
        return True
    pid = int(found.group(1))
    if pid == os.getpid():
        return own
    return process_ended(pid)


def saved_index_file(directory: Path, name: str = "tracks") -> Path | None:
    """The newest saved file of index ``name`` in ``directory``, if any."""
    version = saved_version(directory, name)
    return None if version is None else directory / f"{name}-v{version}.faiss"


def saved_version(directory: Path, name: str = "tracks") -> int | None:
    """The data version of the newest saved file of index ``name`` in ``directory``, if any."""
    if not directory.is_dir():
        return None
    versions = [int(m.group(2)) for p in directory.iterdir() if (m := _FILE.match(p.name)) and m.group(1) == name]
    return max(versions) if versions else None
