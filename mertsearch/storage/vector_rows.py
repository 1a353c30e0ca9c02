"""The stored vectors read and rewritten in bulk: for building indexes, catching up with the rows
stored since a saved one, searching a track's windows, and switching the searched layers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select, update

from mertsearch.storage.records import chunks, from_blob, to_blob
from mertsearch.storage.schema import Meta, TextVector, Track, Window

# Rows read at a time when every vector is streamed (building an index): 16,384 vectors are 48 MiB
# at 768 dims. The database's result is streamed too (yield_per: a server-side cursor on
# PostgreSQL), so a build holds one batch of vectors whatever the catalog's size; without it the
# ORM buffers every row of the result before the first comes back.
READ_BATCH = 16_384
# Ids looked up at a time when sampled vectors are read by id.
SAMPLE_CHUNK = 4_096
# The sample's random draw: the same catalog trains the same index (reproducible builds).
SAMPLE_SEED = 0


def id_column(name: str):
    """The id column of the vectors called ``name``: "tracks", "windows" or "text_vectors"."""
    return {"tracks": Track.id, "windows": Window.id, "text_vectors": TextVector.track_id}[name]


def vector_column(name: str):
    return {"tracks": Track.vector, "windows": Window.vector, "text_vectors": TextVector.vector}[name]


class VectorRows:
    """Part of :class:`mertsearch.storage.store.MetadataStore`: its methods over vectors."""

    def all_track_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every track, in id order."""
        batches = list(self.track_vectors())
        if not batches:
            return np.empty(0, np.int64), np.empty((0, dim), np.float32)
        return np.concatenate([ids for ids, _ in batches]), np.concatenate([vectors for _, vectors in batches])

    def track_vectors(self, batch: int | None = None, *, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (track ids, vectors) with ids above ``after``, in batches (READ_BATCH rows), for
        (re)building the track index."""
        return self._batches(Track.id, Track.vector, batch or READ_BATCH, after)

    def window_vectors(self, batch: int | None = None, *, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (window ids, vectors) with ids above ``after``, in batches (READ_BATCH rows), for
        (re)building the window index."""
        return self._batches(Window.id, Window.vector, batch or READ_BATCH, after)

    def text_vectors(self, batch: int | None = None, *, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (track ids, text vectors) with ids above ``after``, in batches (see storage.text_vectors)."""
        return self._batches(TextVector.track_id, TextVector.vector, batch or READ_BATCH, after)

    def text_vectors_of(self, track_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """{track id: text vector} of those of ``track_ids`` that have one."""
        out: dict[int, np.ndarray] = {}
        with self.session() as session:
            for chunk in chunks(sorted({int(i) for i in track_ids})):
                query = select(TextVector.track_id, TextVector.vector).where(TextVector.track_id.in_(chunk))
                out.update((track_id, from_blob(blob)) for track_id, blob in session.execute(query))
        return out

    def has_text_vector(self, track_id: int) -> bool:
        with self.session() as session:
            return session.get(TextVector, track_id) is not None

    def _batches(self, id_column, vector_column, batch: int, after: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        query = select(id_column, vector_column).where(id_column > after).order_by(id_column)
        with self.session() as session:
            for rows in session.execute(query.execution_options(yield_per=batch)).partitions():
                yield _arrays(rows)

    def sample_vectors(
        self, name: str, count: int, *, transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """Up to ``count`` stored vectors of tracks or windows drawn at random (all of them, in id
        order, when there are no more), to train an index or measure scores; through ``transform``.

        The ids are drawn, then their rows read SAMPLE_CHUNK at a time into one array, each chunk
        transformed as it comes: memory is the sample's, never the table's (``ORDER BY random()``
        would read every row and sort the sample's blobs). The draw is seeded, so a catalog
        samples the same vectors each time."""
        ids_, vectors_ = id_column(name), vector_column(name)
        ids = self.ids(name)
        if count < len(ids):
            ids = np.sort(np.random.default_rng(SAMPLE_SEED).choice(ids, count, replace=False))
        out: np.ndarray | None = None
        filled = 0
        with self.session() as session:
            for start in range(0, len(ids), SAMPLE_CHUNK):
                chunk = ids[start : start + SAMPLE_CHUNK].tolist()
                rows = session.execute(select(ids_, vectors_).where(ids_.in_(chunk)).order_by(ids_))
                _, vectors = _arrays(rows.all())
                if not len(vectors):
                    continue
                if transform is not None:
                    vectors = transform(vectors)
                if out is None:
                    out = np.empty((len(ids), vectors.shape[1]), np.float32)
                out[filled : filled + len(vectors)] = vectors
                filled += len(vectors)
        # Rows removed since the ids were read are left out.
        return np.empty((0, 0), np.float32) if out is None else out[:filled]

    def vectors_by_id(self, name: str, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their vectors) of these tracks or windows; ids no longer stored are left out."""
        table = Track if name == "tracks" else Window
        found, vectors = [], []
        with self.session() as session:
            for chunk in chunks([int(i) for i in ids]):
                for row_id, blob in session.execute(select(table.id, table.vector).where(table.id.in_(chunk))):
                    found.append(row_id)
                    vectors.append(from_blob(blob))
        if not found:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return np.array(found, dtype=np.int64), np.stack(vectors)

    def window_ids_of(self, track_id: int) -> list[int]:
        """The ids of a track's windows, in order."""
        with self.session() as session:
            query = select(Window.id).where(Window.track_id == int(track_id)).order_by(Window.position)
            return list(session.scalars(query))

    def window_places(self, window_ids: Sequence[int]) -> dict[int, tuple[int, float, float]]:
        """{window id: (track id, start, end)}."""
        with self.session() as session:
            return {
                row[0]: (row[1], row[2], row[3])
                for chunk in chunks(window_ids)
                for row in session.execute(
                    select(Window.id, Window.track_id, Window.start, Window.end).where(Window.id.in_(chunk))
                )
            }

    def windows_of(self, track_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """For each track, (times shaped (n, 2) as start/end seconds, window vectors (n, dim))."""
        out: dict[int, tuple[list, list]] = {}
        with self.session() as session:
            rows = session.execute(
                select(Window.track_id, Window.start, Window.end, Window.vector)
                .where(Window.track_id.in_(list(track_ids)))
                .order_by(Window.track_id, Window.position)
            )
            for track_id, start, end, blob in rows:
                times, vectors = out.setdefault(track_id, ([], []))
                times.append((start, end))
                vectors.append(from_blob(blob))
        return {k: (np.array(t, dtype=np.float64), np.stack(v)) for k, (t, v) in out.items()}

    def track_layer_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, per-layer track vectors shaped (tracks, layers, dim)) of the tracks that have them."""
        with self.session() as session:
            rows = session.execute(
                select(Track.id, Track.layer_vectors).where(Track.layer_vectors.is_not(None)).order_by(Track.id)
            ).all()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0, dim), np.float32)
        return np.array([r[0] for r in rows]), np.stack([from_blob(r[1]).reshape(-1, dim) for r in rows])

    def missing_layer_vectors(self) -> int:
        """How many tracks lack per-layer vectors."""
        with self.session() as session:
            return session.scalar(select(func.count(Track.id)).where(Track.layer_vectors.is_(None)))

    def rewrite_searchable(self, dim: int, combine, meta: dict[str, str]) -> int:
        """Recompute every track's and window's searchable vectors from the stored per-layer ones.

        ``combine`` maps window layer vectors (windows, layers, dim) to (window vectors, track
        vector). Everything, ``meta`` included, changes in one transaction: a crash leaves the old
        vectors or the new ones, never a mix. Returns the number of tracks rewritten.
        """
        with self.session() as session, session.begin():
            track_ids = session.scalars(select(Track.id).order_by(Track.id)).all()
            for track_id in track_ids:
                rows = session.execute(
                    select(Window.id, Window.layer_vectors).where(Window.track_id == track_id).order_by(Window.position)
                ).all()
                layer_windows = np.stack([from_blob(blob).reshape(-1, dim) for _id, blob in rows])
                window_vectors, vector = combine(layer_windows)
                session.execute(
                    update(Window),
                    [{"id": row[0], "vector": to_blob(v)} for row, v in zip(rows, window_vectors, strict=True)],
                )
                session.execute(update(Track).where(Track.id == track_id).values(vector=to_blob(vector)))
            for key, value in meta.items():
                session.merge(Meta(key=key, value=value))
            self._bump_version(session, searchable_changed=True)
            return len(track_ids)


def _arrays(rows: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors (rows, dim)) of (id, vector blob) rows, without a Python object per vector."""
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.empty((0, 0), np.float32)
    # Joined into a bytearray: one copy, and a writable array (FAISS and the transform take it as it is).
    vectors = np.frombuffer(bytearray().join(row[1] for row in rows), dtype=np.float32)
    return ids, vectors.reshape(len(rows), -1)
