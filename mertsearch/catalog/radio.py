"""Similar tracks as a queue: exclusions and no-repeat rules, several seeds by agreement, a seeded
shuffle; radio (the next tracks after a listening history); song paths from one track to another.

The ranking itself is :func:`mertsearch.catalog.queries.similar`'s; what is combined, shuffled or
aimed at is mertsearch.search.radio's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from mertsearch.catalog import lookups, queries
from mertsearch.catalog.core import Core
from mertsearch.encoder.pooling import l2_normalize
from mertsearch.errors import InvalidArgumentError
from mertsearch.search import Query, Rules, SearchResult, rank
from mertsearch.search.engine import Ranked, Ranking
from mertsearch.search.options import MAX_K, SearchOptions
from mertsearch.search.radio import SHUFFLE_POOL, capped, fuse, path_targets, recent_tags, shuffled
from mertsearch.storage.store import from_blob
from mertsearch.text import fold

# Each seed's own neighbour list, fused by agreement, is its neighbourhood: the nearest tenth of the
# catalog, at most 200 tracks and at least k (longer while the caps leave fewer than k). A list
# that held the whole catalog would rank every track by its mean rank, and the tracks midway
# between the seeds, found by all lists, would come first again, as with the mean vector.
FUSION_DEPTH = 200
FUSION_SHARE = 10
# The lists grow (x4) to at most this many times their first depth while the caps leave fewer than
# k: a ranking that cannot be filled stops there, partial, rather than reading the catalog.
FUSION_CEILING = 16
# Radio: the seeds are the last RADIO_SEEDS tracks of the history; unless told otherwise, no result
# shares the artist of the last RADIO_NO_REPEAT_ARTIST tracks or the album of the last
# RADIO_NO_REPEAT_ALBUM, and each artist comes once per answer (RADIO_PER_ARTIST).
RADIO_SEEDS = 3
RADIO_NO_REPEAT_ARTIST = 3
RADIO_NO_REPEAT_ALBUM = 5
RADIO_PER_ARTIST = 1
# The longest song path.
MAX_PATH = 1000
# A path's step is one of the PATH_CHOICES tracks nearest its point: the nearest that comes closer
# to the end than the step before (see _forward).
PATH_CHOICES = 5


def similar(cat: Core, seeds: list[int], options: SearchOptions) -> Ranking:
    """See :meth:`mertsearch.catalog.Catalog.similar`."""
    if not seeds:
        raise InvalidArgumentError("similar needs at least one seed track")
    cat.take_up_meta()
    excluded = lookups.track_ids(cat, options.exclude)
    rows = cat.store.tracks_by_id(seeds + excluded)
    leaders = {rows[i].duplicate_of or i for i in seeds + excluded}
    artists, albums = recent_tags([rows[i] for i in excluded], options.no_repeat_artist, options.no_repeat_album)
    if options.exclude_seed_artist:
        artists += [rows[i].artist for i in seeds if rows[i].artist]
    rules = {"exclude": leaders, "exclude_artists": artists, "exclude_albums": albums}
    # A shuffle draws from more than k of the best.
    wanted = options.changed(k=min(SHUFFLE_POOL * options.k, MAX_K)) if options.shuffle > 0 else options
    if len(seeds) == 1 or options.combine == "average":
        results = queries.similar(cat, seeds, wanted, **rules)
    else:
        results = _agreement(cat, seeds, wanted, rules)
    if options.shuffle > 0:
        return Ranking(shuffled(results, options.k, options.shuffle, options.seed), partial=results.partial)
    return results


def _agreement(cat: Core, seeds: list[int], options: SearchOptions, rules: dict) -> Ranking:
    """Each seed's own ranking (without the diversity caps, which apply to the fused list), fused
    by reciprocal rank; the lists grow until k results pass the caps or no track is left, up to
    FUSION_CEILING times the first depth. Results are made only for the k fused ones: the lists
    are rankings of ids and scores."""
    # Counts every vector in the index, excluded ones too: the neighbourhood's size is the catalog's.
    depth = max(options.k, min(FUSION_DEPTH, len(cat.indexes.tracks) // FUSION_SHARE))
    deepest = min(depth * FUSION_CEILING, MAX_K)
    allowed = queries.filter_ids(cat, options)
    while True:
        own = options.changed(k=min(depth, deepest), per_artist=None, per_album=None)
        lists = [queries.similar_ranked(cat, [seed], own, **rules, allowed=allowed) for seed in seeds]
        chosen = _fused(lists, options)
        # Every list ended before its k: no track is left. A list at its ceiling grows no further.
        exhausted = all(len(ranked.chosen) < own.k and not ranked.partial for ranked in lists)
        stopped = own.k == deepest or any(ranked.partial for ranked in lists)
        if len(chosen) == options.k or exhausted or stopped:
            break
        depth *= 4
    owner = {id(candidate): n for n, ranked in enumerate(lists) for candidate in ranked.chosen}
    made = {}
    for n, ranked in enumerate(lists):
        made.update((r.track_id, r) for r in ranked.results([c for c in chosen if owner[id(c)] == n]))
    # Fewer than k, and the lists stopped at a ceiling rather than at the end of the catalog.
    return Ranking([made[c.track_id] for c in chosen], partial=len(chosen) < options.k and not exhausted)


def _fused(lists: list[Ranked], options: SearchOptions) -> list:
    """The first k of the seeds' candidates fused by agreement, under the options' caps."""
    rows = {track_id: row for ranked in lists for track_id, row in ranked.rows.items()}
    fused = fuse([ranked.chosen for ranked in lists], lambda track_id: rows[track_id].duplicate_of or track_id)
    tags = lambda candidate: (rows[candidate.track_id].artist, rows[candidate.track_id].album)  # noqa: E731
    return capped(fused, options.per_artist, options.per_album, tags=tags)[: options.k]


def radio(cat: Core, history: list[int], options: SearchOptions) -> Ranking:
    """See :meth:`mertsearch.catalog.Catalog.radio`."""
    if not history:
        raise InvalidArgumentError("radio needs a history of at least one track")
    seeds = list(dict.fromkeys(reversed(history)))[:RADIO_SEEDS][::-1]
    asked = options.changed(exclude=(*options.exclude, *history))
    defaults = {
        name: value
        for name, value in (
            ("no_repeat_artist", RADIO_NO_REPEAT_ARTIST),
            ("no_repeat_album", RADIO_NO_REPEAT_ALBUM),
            ("per_artist", RADIO_PER_ARTIST),
        )
        if getattr(options, name) is None
    }
    results = similar(cat, seeds, asked.changed(**defaults))
    if len(results) < options.k and defaults:
        # A small library, or one artist: the rest from the ranking without the default rules,
        # under the caller's own caps over the whole answer.
        chosen = {r.track_id for r in results}
        more = similar(cat, seeds, asked)
        rest = [r for r in more if r.track_id not in chosen]
        kept = capped(results + rest, options.per_artist, options.per_album)[: options.k]
        results = Ranking(kept, partial=more.partial)
    return results


def path(cat: Core, start: int, end: int, count: int, options: SearchOptions) -> list[SearchResult]:
    """See :meth:`mertsearch.catalog.Catalog.path`."""
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_PATH:
        raise InvalidArgumentError(f"count must be between 2 and {MAX_PATH} tracks, got {count!r}")
    _check_path_options(options)
    cat.take_up_meta()
    excluded = lookups.track_ids(cat, options.exclude)
    rows = cat.store.tracks_by_id([start, end, *excluded])
    recording = {i: rows[i].duplicate_of or i for i in rows}
    if recording[start] == recording[end]:
        raise InvalidArgumentError("start and end are the same recording: a path needs two")
    ends = cat.transform(np.stack([from_blob(rows[start].vector), from_blob(rows[end].vector)]))
    first, last = l2_normalize(ends[0]), l2_normalize(ends[1])
    allowed = queries.filter_ids(cat, options)
    calibration = cat.calibration
    similarity = None if calibration is None else calibration.scorer("tracks")
    tolerance, sampled = cat.windows.hop_s / 2, cat.windows.sample_s is not None

    def nearest(target: np.ndarray, rules: Rules, k: int = 1) -> list[SearchResult]:
        query = Query(target, target[None, :], np.zeros((1, 2)), clip=False)
        found = rank(
            mode="tracks",
            tracks_index=cat.indexes.tracks,
            windows_index=cat.indexes.windows,
            store=cat.store,
            query=query,
            k=k,
            rules=rules,
            transform=cat.transform,
            tolerance=tolerance,
            sampled=sampled,
        )
        return found

    steps = nearest(first, Rules(allowed=np.array([start])))
    before, on_path = [rows[i] for i in excluded], [rows[start]]
    used = {recording[i] for i in (start, end, *excluded)}
    for n, target in enumerate(path_targets(first, last, count)):
        artists, albums = _path_tags(before, on_path, rows[end], options)
        rules = Rules(
            allowed=allowed, exclude=used, exclude_artists=artists, exclude_albums=albums, filters=options.filters
        )
        step = _forward(cat, nearest(target, rules, PATH_CHOICES), steps[-1], last)
        if step is None:
            raise InvalidArgumentError(
                f"a path of {count} tracks needs {count - 2} between start and end, and only {n} are left "
                "after the filters, the exclusions and the no-repeat rules: ask for fewer"
            )
        steps.append(step)
        on_path.append(cat.store.tracks_by_id([step.track_id])[step.track_id])
        used.add(on_path[-1].duplicate_of or step.track_id)
    steps += nearest(last, Rules(allowed=np.array([end])))
    return _scored_by_step(cat, steps, similarity)


def _forward(cat: Core, candidates: list[SearchResult], previous: SearchResult, end: np.ndarray) -> SearchResult | None:
    """The candidate nearest its point that comes closer to the end than the step before it, or
    where none does, the nearest: in a sparse catalog the track nearest a point may lie to one
    side, and a path that steps back and forth is no journey."""
    if not candidates:
        return None
    ids = [previous.track_id, *(c.track_id for c in candidates)]
    rows = cat.store.tracks_by_id(ids)
    vectors = cat.transform(np.stack([from_blob(rows[i].vector) for i in ids]))
    to_end = vectors @ end / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
    return next((c for c, closer in zip(candidates, to_end[1:], strict=True) if closer > to_end[0]), candidates[0])


def _check_path_options(options: SearchOptions) -> None:
    """A path is made of whole-track steps, one track at a time: options for rankings have no
    meaning there, and are refused rather than ignored."""
    meaningless = {
        "mode": options.mode not in (None, "tracks"),
        "shuffle": options.shuffle > 0,
        "min_score": options.min_score is not None,
        "min_similarity": options.min_similarity is not None,
        "exclude_seed_artist": options.exclude_seed_artist,
    }
    refused = [name for name, given in meaningless.items() if given]
    if refused:
        raise InvalidArgumentError(f"a song path does not take {', '.join(refused)}")


def _path_tags(before: list, on_path: list, end, options: SearchOptions) -> tuple[list[str], list[tuple[str, str]]]:
    """Artists and albums the next step must not have: the no-repeat rules over the exclusions and
    the path so far, in that order, and the caps over the path with its end."""
    artists, albums = recent_tags(before + on_path, options.no_repeat_artist, options.no_repeat_album)
    whole = [*on_path, end]
    artist_counts = Counter(fold(row.artist) for row in whole if row.artist)
    album_counts = Counter((fold(row.artist), fold(row.album)) for row in whole if row.album)
    if options.per_artist is not None:
        artists += [artist for artist, n in artist_counts.items() if n >= options.per_artist]
    if options.per_album is not None:
        albums += [album for album, n in album_counts.items() if n >= options.per_album]
    return artists, albums


def _scored_by_step(cat: Core, steps: list[SearchResult], similarity) -> list[SearchResult]:
    """Each step's score is its cosine with the track before it (the start's: 1), in the catalog's
    searched space, so a weak step shows."""
    rows = cat.store.tracks_by_id([s.track_id for s in steps])
    vectors = cat.transform(np.stack([from_blob(rows[s.track_id].vector) for s in steps]))
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = [1.0, *(float(a @ b) for a, b in zip(vectors[:-1], vectors[1:], strict=True))]
    return [
        dataclasses.replace(step, score=score, similarity=None if similarity is None else similarity(score))
        for step, score in zip(steps, scores, strict=True)
    ]
