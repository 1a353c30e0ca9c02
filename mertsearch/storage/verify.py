"""Does a catalog hold together? The database, both FAISS indexes, the manifest and the vectors.

Every check reads; nothing here writes. Each problem is one readable line.
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
        for table in (Track, Window):
            wrong = session.scalar(select(func.count(table.id)).where(func.length(table.vector) != 4 * dim))
            if wrong:
                problems.append(f"{wrong} stored {table.__tablename__} vectors are not {dim} floats")
    return problems


def check_indexes(indexes: Indexes, transform: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    problems = []
    store = indexes.store
    for name in NAMES:
        index = indexes.saved(name)
        if index is None:
            problems.append(f"the {name} index is missing or older than the database (rebuild it)")
            continue
        problems += id_problems(name, index.ids(), store.ids(name), f"the {name} index")
        problems += _check_vectors(name, index, store, transform)
    return problems


def _check_vectors(name: str, index: Layered, store, transform) -> list[str]:
    """Each sampled stored vector, transformed, must be what the index holds under its id."""
    table = Track if name == "tracks" else Window
    with store.session() as session:
        rows = session.execute(select(table.id, table.vector).order_by(func.random()).limit(SAMPLE)).all()
    if not rows:
        return []
    ids = np.array([r[0] for r in rows])
    vectors = transform(np.stack([from_blob(r[1]) for r in rows]))
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
        positions = {int(i): n for n, i in enumerate(faiss.vector_to_array(inner.id_map))}
        held = np.stack(
            [inner.index.reconstruct(positions[int(i)]) if int(i) in positions else np.zeros(index.dim) for i in ids]
        )
        return int(np.sum(np.sum(held * vectors, axis=1) < 0.9999))
    stale = 0  # compressed: under its own id the index must hold (nearly) the stored vector
    for vector, own in zip(vectors, ids, strict=True):
        # The list nearest a held vector is probed first, so the usual lists suffice; an id
        # missing from them is reported, not looked for in every list (slow on a big index).
        scores, found = index.search(vector[None, :], 1, allowed=np.array([own]), nprobe=index.nprobe)
        stale += int(found[0, 0] != own or scores[0, 0] < 0.98)
    return stale


def id_problems(name: str, held: np.ndarray, stored: np.ndarray, where: str) -> list[str]:
    """The ids of ``name`` (tracks or windows) that ``where`` (an index, a collection) holds
    twice, lacks, or holds beyond the database's."""
    problems = []
    if len(held) != len(np.unique(held)):
        problems.append(f"{where} holds {len(held) - len(np.unique(held))} ids twice")
    missing, extra = np.setdiff1d(stored, held), np.setdiff1d(held, stored)
    if len(missing):
        problems.append(f"{len(missing)} {name} are in the database but not in {where} (e.g. {missing[0]})")
    if len(extra):
        problems.append(f"{where} holds {len(extra)} ids the database does not (e.g. {extra[0]})")
    return problems
