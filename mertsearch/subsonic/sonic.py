"""The sonicSimilarity answers from the catalog, in upstream songs: similar tracks and song
paths, keeping only tracks the upstream holds."""

from __future__ import annotations

import numpy as np

from mertsearch.catalog import Catalog
from mertsearch.errors import InvalidArgumentError
from mertsearch.search.engine import SearchResult
from mertsearch.search.options import MAX_K
from mertsearch.storage.records import from_blob
from mertsearch.subsonic.mapping import SongMap

PATH_ROUNDS = 16  # tries at a path of upstream songs only
# An album's or artist's songs seed a mix through at most this many of them: the work of one
# mix does not grow with the artist.
MAX_SEEDS = 8
UNSUPPORTED = -1.0  # the spec's similarity when there is none (a catalog not yet calibrated)


def similar(cat: Catalog, songs: SongMap, song_id: str, count: int) -> list[tuple[dict, float]]:
    """The ``count`` upstream songs most similar to ``song_id`` (its other files left out), with
    their calibrated similarity."""
    picked = _nearest(cat, songs, [songs.track_of[song_id]], count)
    return [(songs.entry(song), _similarity(r.similarity)) for song, r in picked]


def mix(cat: Catalog, songs: SongMap, seeds: list[str], count: int) -> list[dict]:
    """An Instant Mix: ``count`` upstream songs like ``seeds`` (an album's or artist's songs: at
    most MAX_SEEDS of them, spread evenly, combined by agreement), never one of the seeds, each
    recording once, and no artist more than a fifth of the list."""
    tracks = [songs.track_of[s] for s in seeds]
    used = [tracks[round(n * len(tracks) / MAX_SEEDS)] for n in range(MAX_SEEDS)] if len(tracks) > MAX_SEEDS else tracks
    per_artist = max(2, -(-count // 5))
    rest = [track for track in tracks if track not in used]
    picked = _nearest(cat, songs, used, count, exclude=rest, per_artist=per_artist)
    return [songs.entry(song) for song, _ in picked]


def _nearest(cat: Catalog, songs: SongMap, tracks: list[int], count: int, **options) -> list[tuple[str, SearchResult]]:
    """The ``count`` upstream songs nearest ``tracks`` with their results. The catalog may hold
    tracks the upstream does not: more are asked for until ``count`` of them are upstream songs
    or the catalog has no more."""
    k = count
    while True:
        results = cat.similar(tracks, k=min(k, MAX_K), **options)
        picked = [(song, r) for r in results if (song := upstream_song(songs, r)) is not None][:count]
        if len(picked) >= count or len(results) < min(k, MAX_K) or k >= MAX_K:
            return picked
        k *= 4


def upstream_song(songs: SongMap, result: SearchResult) -> str | None:
    """The upstream song of a result: its own file's, or where the upstream lacks that file,
    another file of the same recording that it has (a result shows a recording once, by one of
    its files, with the others as alternates)."""
    song = songs.song_of.get(result.track_id)
    if song is None:
        song = next((songs.song_at[p] for p in result.alternates if p in songs.song_at), None)
    return song


def path(cat: Catalog, songs: SongMap, start: str, end: str, count: int) -> list[tuple[dict, float]]:
    """A song path of at most ``count`` upstream songs from ``start`` to ``end`` (both included),
    each with its similarity to ``start``. A catalog with too few tracks for ``count`` gives a
    shorter path; steps the upstream does not hold are left out."""
    first, last = songs.track_of[start], songs.track_of[end]
    if first == last:  # one song (the map holds one song per track): a path of one
        return [(songs.entry(start), 1.0)]
    n, excluded, steps = max(2, min(count, cat.store.count("tracks"))), [], None
    for _ in range(PATH_ROUNDS):
        try:
            steps = cat.path(first, last, n, exclude=tuple(excluded))
        except InvalidArgumentError:
            if n <= 2:
                raise
            n = max(2, n // 2)  # too few tracks qualify between the ends: a shorter path
            continue
        # Tracks the upstream does not hold are left out of the next try, so the path is made of
        # upstream songs; only those that turn up are named, not every track of a large catalog.
        missing = [s.track_id for s in steps if upstream_song(songs, s) is None]
        if not missing:
            break
        excluded += missing
    if steps is None:
        raise InvalidArgumentError("no path between these songs could be made")
    found = [(song, s.track_id) for s in steps if (song := upstream_song(songs, s)) is not None]
    similarities = _similarity_to_first(cat, [track for _, track in found])
    return [(songs.entry(song), similarity) for (song, _), similarity in zip(found, similarities, strict=True)]


def _similarity(value: float | None) -> float:
    return UNSUPPORTED if value is None else float(value)


def _similarity_to_first(cat: Catalog, ids: list[int]) -> list[float]:
    """Each track's calibrated similarity to the first, from the stored vectors in the catalog's
    searched space (as ``similar`` in tracks mode scores them); the first's is 1."""
    rows = cat.store.tracks_by_id(ids)
    vectors = cat.transform(np.stack([from_blob(rows[i].vector) for i in ids]))
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    calibration = cat.calibration
    if calibration is None:
        return [1.0] + [UNSUPPORTED] * (len(ids) - 1)
    scorer = calibration.scorer("tracks")
    return [1.0] + [float(scorer(float(v @ vectors[0]))) for v in vectors[1:]]
