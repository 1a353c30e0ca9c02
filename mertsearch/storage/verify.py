"""Does a catalog hold together? The database, both FAISS indexes, the manifest and the vectors.

Every check reads; nothing here writes. Each problem is one readable line.

The checks read ids, never every vector: the vectors are compared on a sample of ids drawn from
the ids read, fetched by id (sorting or scanning the vector column would read every blob:
gigabytes for millions of windows).
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
from sqlalchemy import func, select

from mertsearch.storage.indexes import NAMES, Indexes, Layered
from mertsearch.storage.schema import Track, Window
from mertsearch.storage.store import MetadataStore, from_blob
from mertsearch.storage.vector_index import FLAT, VectorIndex

# Vectors checked against each index (all of them in catalogs up to this size).
SAMPLE = 2000


def check_store(store: MetadataStore, dim: int) -> list[str]:
    problems = []
    with store.session() as session:
        orphans = session.scalar(select(func.count(Window.id)).where(Window.track_id.not_in(select(Track.id))))
        if orphans:
            problems.append(f"{orphans} windows belong to no track")
        empty = session.scalar(select(func.count(Track.id)).where(Track.id.not_in(select(Window.track_id))))
        if empty:
            problems.append(f"{empty} tracks have no windows")
        leaders = select(Track.duplicate_of).where(Track.duplicate_of.is_not(None))
        chained = session.scalar(
            select(func.count(Track.id)).where(Track.id.in_(leaders), Track.duplicate_of.is_not(None))
        )
        if chained:
            problems.append(f"{chained} duplicate groups are led by a track that is itself a duplicate")
        wrong = session.scalar(select(func.count(Track.id)).where(func.length(Track.vector) != 4 * dim))
        if wrong:
            problems.append(f"{wrong} stored tracks vectors are not {dim} floats")
    # Windows on a sample: a track's windows are stored with its vector, checked above in full.
    # Windows on a sample of ids drawn between the lowest and highest (no id list read): a
    # track's windows are stored with its vector, checked above in full.
    low, high = store.id_range("windows")
    span = high + 1 - low
    drawn = np.arange(low, high + 1) if span <= SAMPLE else low + np.random.default_rng().choice(span, SAMPLE, False)
    blobs = _blobs("windows", store, drawn)
    wrong = sum(len(blob) != 4 * dim for blob in blobs.values())
    if wrong:
        problems.append(f"{wrong} of {len(blobs)} sampled stored windows vectors are not {dim} floats")
    return problems


def check_indexes(indexes: Indexes, transform: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    problems = []
    for name in NAMES:
        problems += index_problems(indexes, name, transform)
    return problems


def index_problems(indexes: Indexes, name: str, transform: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    """What is wrong with the saved index ``name`` (tracks or windows), each problem a line."""
    store = indexes.store
    index = indexes.saved(name)
    if index is None:
        return [f"the {name} index is missing or older than the database (rebuild it)"]
    stored = store.ids(name)
    return id_problems(name, index.ids(), stored, f"the {name} index") + _check_vectors(
        name, index, store, sample_ids(stored), transform
    )


def sample_ids(ids: np.ndarray, size: int = SAMPLE) -> np.ndarray:
    """Up to ``size`` of ``ids``, drawn at random (another sample at each check)."""
    return ids if len(ids) <= size else np.sort(np.random.default_rng().choice(ids, size, replace=False))


def sampled_vectors(name: str, store: MetadataStore, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, stored vectors) of those of ``ids`` still stored whose vectors are ``dim`` floats
    (a vector of another size is check_store's to report)."""
    blobs = {i: blob for i, blob in _blobs(name, store, ids).items() if len(blob) == 4 * dim}
    if not blobs:
        return np.empty(0, np.int64), np.empty((0, dim), np.float32)
    return np.fromiter(blobs, np.int64, len(blobs)), np.stack([from_blob(blob) for blob in blobs.values()])


def _blobs(name: str, store: MetadataStore, ids: np.ndarray) -> dict[int, bytes]:
    table = Track if name == "tracks" else Window
    with store.session() as session:
        query = select(table.id, table.vector).where(table.id.in_([int(i) for i in ids]))
        return {int(row_id): blob for row_id, blob in session.execute(query)}


def _check_vectors(name: str, index: Layered, store, ids: np.ndarray, transform) -> list[str]:
    """Each sampled stored vector, transformed, must be what the index holds under its id."""
    ids, vectors = sampled_vectors(name, store, ids, index.dim)
    if not len(ids):
        return []
    vectors = transform(vectors)
    stale = 0
    for part in (index.base, index.recent):
        mine = np.array([index.part_of(int(i)) is part for i in ids])
        if mine.any():
            stale += _stale(part, ids[mine], vectors[mine])
    return [f"{stale} of {len(ids)} sampled {name} vectors in the index differ from the stored ones"] if stale else []


def _stale(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray) -> int:
    """How many of ``vectors`` the index does not hold (nearly) as they are under their ``ids``."""
    if index.factory == FLAT:
        inner = faiss.downcast_index(index.index)
        held_ids = faiss.vector_to_array(inner.id_map)
        if not len(held_ids):
            return len(ids)
        order = np.argsort(held_ids)  # positions found by a sorted search, not a dict of every id
        positions = order[np.searchsorted(held_ids, ids, sorter=order).clip(max=len(held_ids) - 1)]
        held = np.zeros_like(vectors)
        for row, (own, position) in enumerate(zip(ids, positions, strict=True)):
            if held_ids[position] == own:
                held[row] = inner.index.reconstruct(int(position))
        return int(np.sum(np.sum(held * vectors, axis=1) < 0.9999))
    # Compressed: under its own id the index must hold (nearly) the stored vector. One search of
    # them all among the sampled ids: each finds its own first, bar a copy of it (a duplicate
    # file's window) among the sample, which the few results leave room for. The list nearest a
    # held vector is probed first, so the usual lists suffice; an id missing from them is
    # reported, not looked for in every list (slow on a big index).
    scores, found = index.search(vectors, 4, allowed=ids, nprobe=index.nprobe)
    if not found.shape[1]:
        return len(ids)
    own = found == ids[:, None]
    held = np.where(own, scores, -np.inf).max(axis=1)
    return int(np.sum(held < 0.98))


def id_problems(name: str, held: np.ndarray, stored: np.ndarray, where: str) -> list[str]:
    """The ids of ``name`` (tracks or windows) that ``where`` (an index, a collection) holds
    twice, lacks, or holds beyond the database's (``stored``, in order)."""
    problems = []
    held = np.sort(held)
    twice = int(np.count_nonzero(held[1:] == held[:-1]))
    if twice:
        problems.append(f"{where} holds {twice} ids twice")
    elif np.array_equal(held, stored):  # stored is in order: the usual case, answered in one pass
        return problems
    missing, extra = np.setdiff1d(stored, held), np.setdiff1d(held, stored)
    if len(missing):
        problems.append(f"{len(missing)} {name} are in the database but not in {where} (e.g. {missing[0]})")
    if len(extra):
        problems.append(f"{where} holds {len(extra)} ids the database does not (e.g. {extra[0]})")
    return problems
