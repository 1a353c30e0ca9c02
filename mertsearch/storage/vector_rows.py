"""The stored vectors read and rewritten in bulk: for building indexes, catching up with the rows
stored since a saved one, searching a track's windows, and switching the searched layers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sqlalchemy import func, select, update

from mertsearch.storage.records import chunks, from_blob, to_blob
from mertsearch.storage.schema import Meta, Track, Window


class VectorRows:
    """Part of :class:`mertsearch.storage.store.MetadataStore`: its methods over vectors."""

    def all_track_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every track, in id order."""
        batches = list(self.track_vectors())
        if not batches:
            return np.empty(0, np.int64), np.empty((0, dim), np.float32)
        return np.concatenate([ids for ids, _ in batches]), np.concatenate([vectors for _, vectors in batches])

    def track_vectors(self, batch: int = 10000, *, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (track ids, vectors) with ids above ``after``, in batches, for (re)building the track index."""
        return self._batches(Track.id, Track.vector, batch, after)

    def window_vectors(self, batch: int = 50000, *, after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (window ids, vectors) with ids above ``after``, in batches, for (re)building the window index."""
        return self._batches(Window.id, Window.vector, batch, after)

    def _batches(self, id_column, vector_column, batch: int, after: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with self.session() as session:
            ids, vectors = [], []
            query = select(id_column, vector_column).where(id_column > after).order_by(id_column)
            for row_id, blob in session.execute(query):
                ids.append(row_id)
                vectors.append(from_blob(blob))
                if len(ids) == batch:
                    yield np.array(ids, dtype=np.int64), np.stack(vectors)
                    ids, vectors = [], []
            if ids:
                yield np.array(ids, dtype=np.int64), np.stack(vectors)

    def sample_vectors(self, name: str, count: int) -> np.ndarray:
        """Up to ``count`` random stored vectors of tracks or windows (to train an index)."""
        # Ids drawn from the stored ones, then read by id: ORDER BY random() would read every blob.
        ids = self.ids(name)
        if len(ids) > count:
            ids = np.random.default_rng().choice(ids, count, replace=False)
        return self.vectors_by_id(name, ids)[1]

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
