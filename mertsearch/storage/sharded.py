"""Building an inverted-file index from shards, with memory bounded by the shard, not the catalog.

The trained, empty index is saved once; the vectors are then streamed from the store and added
part by part, each part to a copy of the trained index that is written out as its own shard file
and dropped; finally the shards' inverted lists, memory-mapped, are merged into one lists file
(FAISS's OnDiskInvertedLists). The merged index searches with its lists mapped from that file,
so neither building nor searching needs the catalog's codes in RAM.

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
# At most this many training vectors (1.5 GB at 768 dims): k-means on more costs time for little gain.
TRAIN_MAX = 500_000
# An index whose codes and ids take more than this is built in shards of this size and merged on disk.
SHARD_BYTES = 512 * 2**20


def train_sample_size(index: VectorIndex) -> int:
    """Vectors to sample for training: TRAIN_PER_LIST per list (at least 10,000), capped at TRAIN_MAX."""
    lists = faiss.extract_index_ivf(index.index).nlist if _is_ivf(index.index) else 256
    return min(max(TRAIN_PER_LIST * lists, 10_000), TRAIN_MAX)


def bytes_per_vector(index: VectorIndex) -> int:
    """What one vector costs in an inverted list: its code and its 8-byte id."""
    return faiss.extract_index_ivf(index.index).code_size + 8


def default_shard_size(index: VectorIndex) -> int:
    return max(10_000, SHARD_BYTES // bytes_per_vector(index))


def shardable(index: VectorIndex) -> bool:
    """Whether ``index`` is of a kind that can be built in shards: an inverted file."""
    return _is_ivf(index.index)


def _parts(batches: Iterable[tuple[np.ndarray, np.ndarray]], size: int) -> Iterator[list[tuple]]:
    """Regroup (ids, vectors) batches into parts of ``size`` vectors (the last one may be smaller)."""
    part, count = [], 0
    for ids, vectors in batches:
        first = 0
        while first < len(ids):
            take = min(size - count, len(ids) - first)
            part.append((ids[first : first + take], vectors[first : first + take]))
            count += take
            first += take
            if count == size:
                yield part
                part, count = [], 0
    if part:
        yield part


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

    Returns the merged index (``trained`` itself, whose lists are now the merged ones). Peak
    memory: one shard's codes and one batch of vectors (the store yields batches of 50,000).
    """
    if len(trained):
        raise ValueError("add_in_shards needs an empty, trained index")
    empty = folder / "trained.faiss"
    faiss.write_index(trained.index, str(empty))
    shards = []
    for number, part in enumerate(_parts(batches, shard_size)):
        shard = faiss.read_index(str(empty))
        for ids, vectors in part:
            shard.add_with_ids(
                np.ascontiguousarray(transform(vectors), dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )
        del part
        path = folder / f"shard-{number:05d}.faiss"
        faiss.write_index(shard, str(path))
        shards.append(path)
        del shard
    merge_on_disk(trained.index, shards, folder / "lists.ivfdata")
    trained._high_water = None  # its ids came in through the shards: read them when asked
    for path in [empty, *shards]:
        path.unlink()
    return trained


def merge_on_disk(trained: faiss.Index, shards: list[Path], lists_file: Path) -> None:
    """Give the empty ``trained`` index the inverted lists of every shard, merged into ``lists_file``."""
    ivf = faiss.extract_index_ivf(trained)
    # Mapped, not read: the shards' lists pass through the page cache only.
    opened = [faiss.read_index(str(path), faiss.IO_FLAG_MMAP) for path in shards]
    sources = faiss.InvertedListsPtrVector()
    for shard in opened:
        sources.push_back(faiss.extract_index_ivf(shard).invlists)
    merged = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_file))
    with _quiet_stdout():  # FAISS prints each resize of the lists file on stdout (--json goes there)
        total = merged.merge_from_multiple(sources.data(), sources.size(), False, False)
    ivf.replace_invlists(merged, True)
    merged.this.disown()
    ivf.ntotal = trained.ntotal = total
    del opened


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
    """Train the empty inverted-file ``index`` on ``sample(count)`` and add ``batches`` in shards,
    merged on disk; the lists file waits in a build folder until the index is saved."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_build_folders(directory, name)
    folder = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}-build-{os.getpid()}-"))
    index.train(transform(sample(train_sample_size(index))))
    return add_in_shards(
        index, batches, folder=folder, shard_size=shard_size or default_shard_size(index), transform=transform
    )
