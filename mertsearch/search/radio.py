"""Queues, mixes and journeys built from rankings: several seeds fused by agreement, a seeded
shuffle of the best results, diversity caps over a fused list, and the points a song path aims at.

Everything here works on rankings and vectors it is handed; mertsearch.catalog.radio runs the
queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from mertsearch.search.engine import SearchResult
from mertsearch.text import fold

# Reciprocal-rank fusion's constant (Cormack et al. 2009): a rank r adds 1 / (60 + r), so the first
# places of one list do not outweigh being found by several lists.
FUSION_K = 60
# A shuffle draws its k results from the best SHUFFLE_POOL * k.
SHUFFLE_POOL = 4


def fuse(lists: Sequence[Sequence], recording_of: Callable[[int], int]) -> list:
    """One ranking from several seeds' own rankings (results, or anything with a ``track_id`` and a
    ``score``), by reciprocal-rank fusion: a recording scores
    the sum over the lists that hold it of 1 / (60 + its rank there) (ranks from 1), so one found
    by several seeds comes before one that a single seed ranks first. Each recording appears once,
    as the list entry that scored highest (its score and similarity are those of its nearest
    seed); ties go to the higher score."""
    fused: Counter = Counter()
    best: dict[int, SearchResult] = {}
    for results in lists:
        for rank, result in enumerate(results, start=1):
            recording = recording_of(result.track_id)
            fused[recording] += 1.0 / (FUSION_K + rank)
            if recording not in best or result.score > best[recording].score:
                best[recording] = result
    order = sorted(fused, key=lambda r: (-fused[r], -best[r].score, best[r].track_id))
    return [best[recording] for recording in order]


def capped(results: Sequence, per_artist: int | None, per_album: int | None, *, tags: Callable | None = None) -> list:
    """``results`` in order, less those past ``per_artist`` of their artist or ``per_album`` of their
    album (untagged tracks are not counted), as the ranking's own caps count them; ``tags`` gives
    an entry's (artist, album), by default its own."""
    artists: Counter = Counter()
    albums: Counter = Counter()
    kept = []
    for result in results:
        artist, album = (fold(tag) for tag in (tags(result) if tags else (result.artist, result.album)))
        if per_artist is not None and artist and artists[artist] >= per_artist:
            continue
        if per_album is not None and album and albums[(artist, album)] >= per_album:
            continue
        artists[artist] += 1
        albums[(artist, album)] += 1
        kept.append(result)
    return kept


def shuffled(results: Sequence[SearchResult], k: int, temperature: float, seed: int | None) -> list[SearchResult]:
    """``k`` of ``results`` drawn without replacement, each draw taking one of those left with
    probability proportional to exp(similarity / temperature) (the score where similarity is
    None), in the order drawn. Done at once by the Gumbel top-k trick: the k largest of
    value / temperature + Gumbel noise are such a draw. A ``seed`` gives the same draw every
    time; None a new one."""
    if not results:
        return []
    values = np.array([r.score if r.similarity is None else r.similarity for r in results], dtype=np.float64)
    keys = values / temperature + np.random.default_rng(seed).gumbel(size=len(values))
    order = np.argsort(-keys, kind="stable")[:k]
    return [results[int(i)] for i in order]


def recent_tags(played: Sequence, artists: int | None, albums: int | None) -> tuple[list[str], list[tuple[str, str]]]:
    """The artists of the last ``artists`` and the (artist, album) pairs of the last ``albums`` of
    ``played`` (track rows, oldest first), for a queue that should not repeat them soon."""
    last_artists = played[-artists:] if artists else []
    last_albums = played[-albums:] if albums else []
    return (
        [row.artist for row in last_artists if row.artist],
        [(row.artist or "", row.album) for row in last_albums if row.album],
    )


def path_targets(start: np.ndarray, end: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` - 2 points a path of ``count`` tracks aims at between its ends: evenly spaced
    along the great circle from ``start`` to ``end`` (unit vectors), so each step turns by the
    same angle towards the end. Ends almost opposite have no one circle between them: the points
    then lie on the normalised straight line, as far as it stays away from the origin."""
    fractions = np.arange(1, count - 1, dtype=np.float64) / (count - 1)
    cosine = float(np.clip(start @ end, -1.0, 1.0))
    angle = float(np.arccos(cosine))
    if 1e-6 < angle < np.pi - 1e-3:
        points = (np.sin((1 - fractions) * angle)[:, None] * start + np.sin(fractions * angle)[:, None] * end) / np.sin(
            angle
        )
    else:
        points = (1 - fractions)[:, None] * start + fractions[:, None] * end
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    # A point at the origin (opposite ends, halfway) aims at nothing in particular: the end's side.
    points = np.where(norms > 1e-6, points / np.maximum(norms, 1e-12), end)
    return points.astype(np.float32)
