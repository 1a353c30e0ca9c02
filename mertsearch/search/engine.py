"""Rank catalog tracks for a query and say where in each track the match is.

Tracks are ranked by the cosine similarity of their pooled vectors to the query's. Then, for
each result, every stored window of that track is compared with every window of the query; the
best pair gives the matching time range in the result track.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass

import numpy as np

from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import VectorIndex


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float


@dataclass(frozen=True)
class SearchResult:
    track_id: int
    path: str
    title: str | None
    artist: str | None
    album: str | None
    score: float
    match: TimeRange

    def as_dict(self) -> dict:
        return asdict(self)


def rank_tracks(
    index: VectorIndex,
    store: MetadataStore,
    *,
    vector: np.ndarray,
    window_vectors: np.ndarray,
    k: int,
    exclude: Collection[int] = (),
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[SearchResult]:
    """The ``k`` tracks closest to ``vector``, best first, leaving out the ids in ``exclude``.

    ``vector`` and ``window_vectors`` are already transformed like the index; ``transform`` is
    applied to the stored window vectors of the results before matching them.
    """
    scores, ids = index.search(vector[None, :], k + len(exclude))
    hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and int(i) not in exclude][:k]
    if not hits:
        return []
    tracks = store.tracks_by_id([i for i, _ in hits])
    windows = store.windows_of([i for i, _ in hits])
    results = []
    for track_id, score in hits:
        track = tracks.get(track_id)
        if track is None:  # removed since the index was loaded
            continue
        times, vectors = windows[track_id]
        if transform is not None:
            vectors = transform(vectors)
        best = int(np.argmax((vectors @ window_vectors.T).max(axis=1)))
        results.append(
            SearchResult(
                track_id=track_id,
                path=track.path,
                title=track.title,
                artist=track.artist,
                album=track.album,
                score=score,
                match=TimeRange(start=round(float(times[best, 0]), 3), end=round(float(times[best, 1]), 3)),
            )
        )
    return results
