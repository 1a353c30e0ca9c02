"""Building an inverted-file index from shards, with memory bounded by the shard, not the catalog.

The trained, empty index is saved once; the vectors are then streamed from the store, each batch
added as it comes to a copy of the trained index that, once it holds a shard's worth, is written
out as its own shard file and dropped; finally the shards' inverted lists, memory-mapped, are
merged into one lists file (FAISS's OnDiskInvertedLists). The merged index searches with its lists
mapped from that file, so neither building nor searching needs the catalog's codes in RAM. A
writer that must rewrite such an index (rows added and taken out) merges its lists and the new rows
into a new lists file the same way (rewrite_on_disk).

Everything is written under a hidden build folder next to the index files; VectorIndex.save moves
the lists file beside them and removes the folder. A build that is killed leaves the saved index
in place and only its folder behind, which the next build or save of that index removes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np

from mertsearch.storage.vector_index import VectorIndex, _is_ivf, remove_build_folders

# Vectors trained on per inverted list: FAISS wants 30-256.
TRAIN_PER_LIST = 64
# At most this many training vectors: k-means on more costs time for little gain.
TRAIN_MAX = 500_000
# And at most this many bytes of them: FAISS holds a copy of the sample beside it while it trains
# (the residuals), so training takes twice this; 1 GiB is 349,525 vectors at 768 dims, 42 per list
# for the 8,192 lists of 5 million windows (100,000 tracks).
TRAIN_BYTES = 2**30
# An index whose codes and ids take more than this is built in shards of this size and merged on disk.
SHARD_BYTES = 512 * 2**20


def train_sample_size(index: VectorIndex) -> int:
    """Vectors to sample for training: TRAIN_PER_LIST per list (at least 10,000), capped at
    TRAIN_MAX and TRAIN_BYTES."""
    lists = faiss.extract_index_ivf(index.index).nlist if _is_ivf(index.index) else 256
    return min(max(TRAIN_PER_LIST * lists, 10_000), TRAIN_MAX, TRAIN_BYTES // (4 * index.dim))


def bytes_per_vector(index: VectorIndex) -> int:
    """What one vector costs in an inverted list: its code and its 8-byte id."""
    return faiss.extract_index_ivf(index.index).code_size + 8


def default_shard_size(index: VectorIndex) -> int:
    return max(10_000, SHARD_BYTES // bytes_per_vector(index))


def shardable(index: VectorIndex) -> bool:
    """Whether ``index`` is of a kind that can be built in shards: an inverted file."""
    return _is_ivf(index.index)


def add_in_shards(
    trained: VectorIndex,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    folder: Path,
    shard_size: int,
    transform: Callable[[np.ndarray], np.ndarray] = lambda vectors: vectors,
) -> VectorIndex:
    """Add every (ids, vectors) batch to copies of the ``trained`` empty index, ``shard_size``
    vectors to a shard file in ``folder``, and merge the shards into ``folder``/lists.ivfdata.

    Returns the merged index (``trained`` itself, whose lists are now the merged ones). Each batch
    goes into the shard as it comes, so peak memory is one shard's codes and one batch of vectors
    (the store yields batches of READ_BATCH), whatever the catalog's size.
    """
    if len(trained):
        raise ValueError("add_in_shards needs an empty, trained index")
    empty = folder / "trained.faiss"
    faiss.write_index(trained.index, str(empty))
    shards: list[Path] = []
    shard, held = None, 0
    for ids, vectors in batches:
        vectors = np.ascontiguousarray(transform(vectors), dtype=np.float32)
        first = 0
        while first < len(ids):
            if shard is None:
                shard, held = faiss.read_index(str(empty)), 0
            take = min(shard_size - held, len(ids) - first)
            shard.add_with_ids(vectors[first : first + take], np.asarray(ids[first : first + take], dtype=np.int64))
            held, first = held + take, first + take
            if held == shard_size:
                shards.append(_write_shard(shard, folder, len(shards)))
                shard = None
        del vectors
    if shard is not None:
        shards.append(_write_shard(shard, folder, len(shards)))
        del shard
    merge_on_disk(trained.index, shards, folder / "lists.ivfdata")
    trained._high_water = None  # its ids came in through the shards: read them when asked
    for path in [empty, *shards]:
        path.unlink()
    return trained


def _write_shard(shard: faiss.Index, folder: Path, number: int) -> Path:
    path = folder / f"shard-{number:05d}.faiss"
    faiss.write_index(shard, str(path))
    return path


def merge_on_disk(trained: faiss.Index, shards: list[Path], lists_file: Path) -> None:
    """Give the empty ``trained`` index the inverted lists of every shard, merged into ``lists_file``."""
    # Mapped, not read: the shards' lists pass through the page cache only.
    opened = [faiss.read_index(str(path), faiss.IO_FLAG_MMAP) for path in shards]
    _merge_lists(trained, [faiss.extract_index_ivf(shard).invlists for shard in opened], lists_file)
    del opened


def _merge_lists(trained: faiss.Index, sources: list, lists_file: Path) -> None:
    """Give the empty ``trained`` index the inverted lists ``sources``, merged into ``lists_file``."""
    ivf = faiss.extract_index_ivf(trained)
    pointers = faiss.InvertedListsPtrVector()
    for lists in sources:
        pointers.push_back(lists)
    merged = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_file))
    with _quiet_stdout():  # FAISS prints each resize of the lists file on stdout (--json goes there)
        total = merged.merge_from_multiple(pointers.data(), pointers.size(), False, False)
    ivf.replace_invlists(merged, True)
    merged.this.disown()
    ivf.ntotal = trained.ntotal = total


def rewrite_on_disk(
    base: VectorIndex, *, added: tuple[np.ndarray, np.ndarray], removed: np.ndarray, directory: Path, name: str
) -> VectorIndex:
    """A new index: the inverted file ``base`` with the ids ``removed`` taken out and ``added``
    (ids, vectors already transformed) put in, its lists merged into a lists file in a build folder
    (published when it is saved, as a sharded build's).

    The base's codes are copied list by list through the page cache, never all in memory, and its
    own lists file, which readers map, is left as it is. So a writer saving a large index after an
    ingest or a removal holds the rows added, not the catalog.
    """
    folder = build_folder(directory, name)
    empty = _empty_copy(base.index)
    ids, vectors = np.asarray(added[0], dtype=np.int64), np.ascontiguousarray(added[1], dtype=np.float32)
    removed = np.asarray(removed, dtype=np.int64)
    # Ids taken out of the base and stored again since (a track stored anew keeps its id, and SQLite
    # gives a deleted last row's id to the next): added after the removal, or it would take them too.
    again = np.isin(ids, removed)
    extra = faiss.deserialize_index(empty)
    if (~again).any():
        extra.add_with_ids(vectors[~again], ids[~again])
    rewritten = faiss.deserialize_index(empty)
    sources = [faiss.extract_index_ivf(base.index).invlists, faiss.extract_index_ivf(extra).invlists]
    _merge_lists(rewritten, sources, folder / "lists.ivfdata")
    del extra
    # In the new lists file, not yet published: no reader maps it. (FAISS prints its resizes.)
    with _quiet_stdout():
        if len(removed):
            rewritten.remove_ids(removed)
        if again.any():
            rewritten.add_with_ids(vectors[again], ids[again])
    return VectorIndex(base.dim, index=rewritten)


def _empty_copy(index: faiss.Index) -> np.ndarray:
    """The trained inverted file ``index`` without its vectors, serialised (to add others like them).

    Its lists are swapped for empty ones while it is serialised, then put back: copying the index
    itself would copy (or, for lists on disk, refuse to copy) every code."""
    ivf = faiss.extract_index_ivf(index)
    lists, owned, totals = ivf.invlists, ivf.own_invlists, (index.ntotal, ivf.ntotal)
    blank = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False  # replace_invlists would delete the lists it owns
    ivf.replace_invlists(blank, False)
    index.ntotal = ivf.ntotal = 0
    try:
        return faiss.serialize_index(index)
    finally:
        ivf.replace_invlists(lists, owned)
        index.ntotal, ivf.ntotal = totals


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send what C code writes to file descriptor 1 to /dev/null meanwhile."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def build_in_shards(
    index: VectorIndex,
    *,
    directory: Path,
    name: str,
    sample: Callable[[int], np.ndarray],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    transform: Callable[[np.ndarray], np.ndarray],
    shard_size: int | None = None,
) -> VectorIndex:
    """Train the empty inverted-file ``index`` on ``sample(count)`` (that many stored vectors,
    already through ``transform``) and add ``batches`` in shards, merged on disk; the lists file
    waits in a build folder until the index is saved."""
    folder = build_folder(directory, name)
    index.train(sample(train_sample_size(index)))
    return add_in_shards(
        index, batches, folder=folder, shard_size=shard_size or default_shard_size(index), transform=transform
    )


def build_folder(directory: Path, name: str) -> Path:
    """A fresh hidden folder for the files of a build of index ``name`` (see remove_build_folders)."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_build_folders(directory, name)
    return Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}-build-{os.getpid()}-"))
