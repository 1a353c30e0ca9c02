"""Rank catalog tracks for a query and say where each one matches.

Two ways to find candidates:

- ``tracks``: the query's pooled vector against every track's pooled vector (whole-track
  similarity);
- ``segments``: each query window against every stored window; a track scores its best window
  pair, so a clip that matches part of a long track finds it.

Either way a result carries the best-matching time range in the track (``match``) and in the
query (``query``), and a clip's result where in the track the clip starts (``offset``; see
placement). Candidates are fetched in growing rounds until ``k`` of them pass the filters
and diversity rules, so asking for k results gives k whenever k tracks qualify among the
nearest few thousand. The rounds stop there whatever the catalog holds: a request's work is
bounded by ``k`` and the query, never by the catalog's size, and a ranking that stopped at that
ceiling with fewer than k is marked ``partial`` (five artists cannot give ten tracks at one per
artist, and finding that out must not read a million rows).

In segments mode the candidates are scored by alignment (see placement) in the order of their
best window pair, which bounds their alignment score (times the share of a longer clip their
duration can cover), until no candidate left can displace the k chosen; only the k returned are
placed, which costs most. A long clip's candidates are found by at most SEARCHED_WINDOWS of its
windows, spread over it.

Filters come as the ids of the tracks they allow. The track index searches among those (a FAISS id
selector). Segment search drops the window hits of other tracks, so it never needs the allowed
tracks' window ids; when that would look up more hits than the allowed tracks have windows (a
narrow filter, or a broad one whose tracks lie far from the query), it scores the allowed tracks'
stored windows exactly instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np

from mertsearch.errors import InvalidArgumentError
from mertsearch.search.placement import align, aligned_score
from mertsearch.storage.filters import Filters
from mertsearch.storage.schema import Track
from mertsearch.storage.store import MetadataStore, from_blob
from mertsearch.storage.vector_index import VectorIndex
from mertsearch.text import fold

MODES = ("segments", "tracks")


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
    query: TimeRange
    duration: float = 0.0
    alternates: list[str] = field(default_factory=list)
    # The share of the catalog's random pairs scoring lower (search.calibration); None: no calibration.
    similarity: float | None = None
    offset: float | None = None  # where in the track the clip starts; None for catalog tracks as queries

    def as_dict(self) -> dict:
        return asdict(self)


class Ranking(list):
    """Results, best first. ``partial``: fewer than k came back and more tracks might have
    qualified: the search stopped at its ceiling of candidates (see FETCH_CEILING)."""

    partial: bool = False

    def __init__(self, results=(), *, partial: bool = False) -> None:
        super().__init__(results)
        self.partial = partial


@dataclass(frozen=True)
class Query:
    """A query's vectors, already transformed like the indexes, and its windows' times.

    ``probe_vectors`` and ``probe_times``: a clip's probe windows (see audio.windows.ProbeCutter),
    which only help place it; ``clip``: False for catalog tracks as queries, whose results get no
    offset.
    """

    vector: np.ndarray
    window_vectors: np.ndarray
    window_times: np.ndarray  # (windows, 2): start, end in seconds
    probe_vectors: np.ndarray | None = None
    probe_times: np.ndarray | None = None
    clip: bool = True

    def placing(self) -> tuple[np.ndarray, np.ndarray]:
        """The vectors and times that place the query along a track: its windows, then its probes."""
        if self.probe_vectors is None or not len(self.probe_vectors):
            return self.window_vectors, self.window_times
        return (
            np.concatenate([self.window_vectors, self.probe_vectors]),
            np.concatenate([self.window_times, self.probe_times]),
        )


# Tracks whose windows are read and scored at a time when a filter's tracks are scored exactly.
EXACT_CHUNK = 256
# The most candidates one ranking reads (rows in tracks mode, hits per query window in segments
# mode), beyond its k and its exclusions, and the most it aligns: a ranking that cannot fill k by
# then is partial. A few thousand rows read take tens of milliseconds; aligning a candidate up to
# a few milliseconds (a long mix against a long clip: tens).
FETCH_CEILING = 4096
ALIGN_CEILING = 256
# Candidates are aligned this many at a time, best window pair first (see _placing).
ALIGN_BATCH = 32
# A clip's windows that look up candidates: more only find the same tracks again.
SEARCHED_WINDOWS = 32


@dataclass(frozen=True)
class Rules:
    """What may be returned: allowed tracks (their ids; None: all), excluded ones, diversity, a
    score floor and a similarity floor."""

    allowed: np.ndarray | None = None
    exclude: Collection[int] = ()  # track ids; other files of their recordings go with them
    exclude_artists: Collection[str] = ()
    per_artist: int | None = None
    per_album: int | None = None
    min_score: float | None = None
    min_similarity: float | None = None
    exclude_albums: Collection[tuple[str, str]] = ()  # (artist, album), as per_album counts them
    # The filters ``allowed`` came from, for an index that applies them itself (see rank).
    filters: Filters | None = None


@dataclass
class _Candidate:
    track_id: int
    score: float
    query_window: int = 0
    # Scored by alignment (segments mode), so its result is placed by alignment too.
    aligned: bool = False


def _track_candidates(
    index: VectorIndex, query: Query, fetch: int, allowed: np.ndarray | None
) -> tuple[list[_Candidate], bool]:
    """The ``fetch`` allowed tracks nearest the query, and whether no other can follow: the index
    probes all its lists before it returns fewer than asked (see VectorIndex.search).

    A filter that allows no more than ``fetch`` tracks makes them all candidates, unsearched (the
    caller scores each from its stored vector): an inverted file would probe every list to find
    them, a whole scan of a large catalog for a filter that matches a handful of tracks or none."""
    if allowed is not None and len(allowed) <= fetch:
        return [_Candidate(int(i), 0.0) for i in allowed], True
    scores, ids = index.search(query.vector[None, :], fetch, allowed=allowed)
    found = [_Candidate(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    return found, len(found) < fetch or fetch >= len(index)


def _rescored(
    candidates: list[_Candidate],
    rows: dict[int, Track],
    query: Query,
    transform: Callable | None,
    exact: dict,
    vectors_of: Callable[[list[int]], dict[int, np.ndarray]] | None = None,
) -> list[_Candidate]:
    """Exact scores from the stored vectors, since a compressed index only approximates them;
    ``exact`` holds those computed in earlier rounds, and gets this round's. ``vectors_of``: where
    the index holds other vectors than the tracks' rows (text vectors), those by track id."""
    new = [c.track_id for c in candidates if c.track_id in rows and c.track_id not in exact]
    if new and vectors_of is not None:
        found = vectors_of(new)
        new = [i for i in new if i in found]
    if new:
        vectors = np.stack([from_blob(rows[i].vector) if vectors_of is None else found[i] for i in new])
        scores = (transform(vectors) if transform is not None else vectors) @ query.vector
        exact.update(zip(new, scores.tolist(), strict=True))
    known = [_Candidate(c.track_id, exact[c.track_id]) for c in candidates if c.track_id in exact]
    return sorted(known, key=lambda c: -c.score)


class _SegmentCandidates:
    """Candidate tracks for segment search, round after round as ``fetch`` grows.

    A round searches the window index for each query window's nearest windows and drops those of
    tracks the filter does not allow. The fewer windows it allows, the more hits a round fetches
    and the more lists it probes, to meet about as many allowed windows as an unfiltered round
    meets windows. Once a round would look up more hits than the allowed tracks have windows,
    every allowed track is scored exactly from its stored windows instead, since reading a
    window's vector costs about what looking up a hit's track does (about 8 and 5 µs in SQLite):
    from the start for a narrow filter, at the end for a broad one whose tracks lie far from the
    query. So a filtered search ends with every allowed track considered, and never holds more
    hits than the filter has windows.
    """

    def __init__(
        self,
        index: VectorIndex,
        store: MetadataStore,
        query: Query,
        allowed: np.ndarray | None,
        share: float,
        transform: Callable[[np.ndarray], np.ndarray] | None,
    ) -> None:
        self.index, self.store, self.query, self.allowed, self.transform = index, store, query, allowed, transform
        self.share = share  # of the windows, that of allowed tracks (an estimate)
        self.first: int | None = None  # the first round's fetch
        self.exact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see _best_pairs
        # No track the rounds have not found has a window pair scoring above this.
        self.bound = math.inf

    def __call__(self, fetch: int) -> tuple[list[_Candidate], bool]:
        """The round's candidates (best window pair first), and whether no other track can follow."""
        self.first = self.first or fetch
        hits = min(math.ceil(fetch / self.share), len(self.index)) if self.share > 0 else len(self.index)
        lookups = len(_searched_windows(len(self.query.window_vectors))) * hits
        if self.allowed is not None and (self.exact is not None or lookups >= self.share * len(self.index)):
            if self.exact is None:
                self.exact = _best_pairs(self.store, self.query, self.allowed, self.transform)
            track_ids, scores, query_windows = (column[:fetch].tolist() for column in self.exact)
            found = [_Candidate(*best) for best in zip(track_ids, scores, query_windows, strict=True)]
            self.bound = found[-1].score if found else -math.inf
            return found, fetch >= len(self.exact[0])
        nprobe = self.index.probes(self.share * self.first / fetch)
        found, self.bound = _segment_candidates(self.index, self.store, self.query, hits, nprobe, self.allowed)
        return found, hits >= len(self.index) and nprobe >= self.index.lists


def _segment_candidates(
    index: VectorIndex, store: MetadataStore, query: Query, hits: int, nprobe: int, allowed: np.ndarray | None
) -> tuple[list[_Candidate], float]:
    """Tracks of the ``hits`` windows nearest each query window, if allowed, scored by their best
    pair; and the best score a window of another track can have with a query window (the highest
    of each query window's last hit)."""
    searched = _searched_windows(len(query.window_vectors))
    scores, ids = index.search(query.window_vectors[searched], hits, nprobe=nprobe)
    # An empty index gives no column at all: no hit, no bound.
    lasts = [float(row[held][-1]) for row, held in zip(scores, ids >= 0, strict=True) if held.any()]
    bound = max(lasts, default=-math.inf)
    places = store.window_places([int(i) for i in np.unique(ids) if i >= 0])
    kept = _allowed_among({track_id for track_id, _, _ in places.values()}, allowed)
    best: dict[int, _Candidate] = {}
    for query_window, row_scores, row_ids in zip(searched.tolist(), scores, ids, strict=True):
        for score, window_id in zip(row_scores, row_ids, strict=True):
            if window_id < 0 or int(window_id) not in places:
                continue
            track_id = places[int(window_id)][0]
            if track_id in kept and (track_id not in best or score > best[track_id].score):
                best[track_id] = _Candidate(track_id, float(score), query_window)
    return sorted(best.values(), key=lambda c: -c.score), bound


def _searched_windows(count: int) -> np.ndarray:
    """Which of a query's ``count`` windows look up candidates: all, or SEARCHED_WINDOWS spread
    evenly over a long clip (a track that matches a stretch of it is met by several of them)."""
    if count <= SEARCHED_WINDOWS:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, SEARCHED_WINDOWS).round().astype(np.int64))


def _allowed_among(track_ids: set[int], allowed: np.ndarray | None) -> set[int]:
    """Those of ``track_ids`` in ``allowed`` (sorted; None allows all)."""
    if allowed is None or not track_ids:
        return track_ids
    ids = np.fromiter(track_ids, dtype=np.int64, count=len(track_ids))
    at = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
    return set(ids[allowed[at] == ids].tolist()) if len(allowed) else set()


def _best_pairs(
    store: MetadataStore, query: Query, track_ids: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each track's best pair of its windows and the query's, scored exactly from the stored
    vectors: (track ids, scores, query windows), best first. The windows are read a few tracks at
    a time and the results kept in arrays, so memory stays small however many tracks there are."""
    parts = [(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))]
    for start in range(0, len(track_ids), EXACT_CHUNK):
        windows = store.windows_of(track_ids[start : start + EXACT_CHUNK].tolist())
        if not windows:
            continue
        vectors = np.concatenate([vectors for _, vectors in windows.values()])
        pairs = (transform(vectors) if transform is not None else vectors) @ query.window_vectors.T
        per_track = np.split(pairs, np.cumsum([len(times) for times, _ in windows.values()])[:-1])
        best = [np.unravel_index(int(np.argmax(own)), own.shape) for own in per_track]
        parts.append(
            (
                np.fromiter(windows, dtype=np.int64, count=len(windows)),
                np.array([own[pair] for own, pair in zip(per_track, best, strict=True)], dtype=np.float32),
                np.array([query_window for _, query_window in best], dtype=np.int64),
            )
        )
    found, scores, query_windows = (np.concatenate(column) for column in zip(*parts, strict=True))
    order = np.argsort(-scores, kind="stable")
    return found[order], scores[order], query_windows[order]


def _aligned(
    candidates: list[_Candidate],
    store: MetadataStore,
    query: Query,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    tolerance: float,
    sampled: bool,
) -> list[_Candidate]:
    """Segment candidates scored again by alignment (see ``aligned_score``), best first; only the
    results returned are placed (see _results)."""
    windows = store.windows_of([c.track_id for c in candidates])
    out = []
    for candidate in candidates:
        times, vectors = windows[candidate.track_id]
        if transform is not None:
            vectors = transform(vectors)
        score = aligned_score(times, vectors, query, tolerance, sampled=sampled)
        out.append(_Candidate(candidate.track_id, score, aligned=True))
    return sorted(out, key=lambda c: -c.score)


def _below_floor(score: float, rules: Rules, similarity: Callable[[float], float] | None) -> bool:
    """Whether ``score`` is under the rules' score floor or, through ``similarity``, their similarity floor."""
    if rules.min_score is not None and score < rules.min_score:
        return True
    return rules.min_similarity is not None and similarity is not None and similarity(score) < rules.min_similarity


def _accepts(rules: Rules, similarity: Callable[[float], float] | None = None) -> Callable[[_Candidate, Track], bool]:
    """A fresh stateful filter for one round of candidates (diversity counts start at zero)."""
    artists: Counter = Counter()
    albums: Counter = Counter()
    recordings: set[int] = set()
    excluded_artists = {fold(a) for a in rules.exclude_artists if a}
    excluded_albums = {(fold(artist), fold(album)) for artist, album in rules.exclude_albums if album}

    def accept(candidate: _Candidate, track: Track) -> bool:
        recording = track.duplicate_of or track.id
        if candidate.track_id in rules.exclude or recording in rules.exclude or recording in recordings:
            return False
        if _below_floor(candidate.score, rules, similarity):
            return False
        artist, album = fold(track.artist), fold(track.album)
        if (artist and artist in excluded_artists) or (album and (artist, album) in excluded_albums):
            return False
        if rules.per_artist is not None and artist and artists[artist] >= rules.per_artist:
            return False
        if rules.per_album is not None and album and albums[(artist, album)] >= rules.per_album:
            return False
        artists[artist] += 1
        albums[(artist, album)] += 1
        recordings.add(recording)
        return True

    return accept


def rank(**arguments) -> Ranking:
    """The ``k`` best tracks for ``query`` that pass ``rules``, best first: :func:`rank_candidates`
    (which takes the same keyword arguments) with its results made.

    ``tolerance`` (half the catalog's hop) is how far apart windows may start and still align;
    ``sampled``: the catalog holds a sample of each track's windows (see ``align``);
    ``similarity`` maps this mode's scores to the results' similarity (see search.calibration).
    """
    return rank_candidates(**arguments).results()


@dataclass
class Ranked:
    """A ranking before its results are made (which reads the chosen tracks' windows): the chosen
    candidates, best first, their rows, and whether the rounds stopped at their ceiling."""

    chosen: list[_Candidate]
    rows: dict[int, Track]
    partial: bool
    finish: Callable[[list[_Candidate], dict[int, Track]], list[SearchResult]]

    def results(self, chosen: list[_Candidate] | None = None) -> Ranking:
        """The results of ``chosen`` (some of this ranking's candidates; all by default)."""
        return Ranking(self.finish(self.chosen if chosen is None else chosen, self.rows), partial=self.partial)


def rank_candidates(
    *,
    mode: str,
    tracks_index: VectorIndex,
    windows_index: VectorIndex,
    store: MetadataStore,
    query: Query,
    k: int,
    rules: Rules = Rules(),
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    tolerance: float = 2.5,
    sampled: bool = False,
    similarity: Callable[[float], float] | None = None,
    rescore: Callable[[list[int]], dict[int, np.ndarray]] | None = None,
) -> Ranked:
    """:func:`rank`'s ranking, without its results (see Ranked). ``rescore``: the vectors a tracks
    index holds by track id, where they are not the rows' own (see _rescored).

    A floor ends the rounds once no track not yet fetched can reach it: in segments mode a track
    aligns at most as well as its best window pair (or 0), and none not yet found has a pair above
    the round's bound.
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if rules.min_similarity is not None and similarity is None:
        raise InvalidArgumentError(
            "min_similarity needs the catalog's calibration: run `mertsearch repair` (or reindex)"
        )
    allowed = None if rules.allowed is None else _sorted_ids(rules.allowed)
    if allowed is not None and hasattr(tracks_index, "narrowed"):
        # An index that filters as it searches (Milvus) holds only the allowed tracks' vectors.
        tracks_index = tracks_index.narrowed(allowed, rules.filters)
        windows_index = windows_index.narrowed(allowed, rules.filters)
        allowed = None
    if mode == "tracks":
        next_round = partial(_track_candidates, tracks_index, query, allowed=allowed)
    else:
        # A filter's share of the windows, taken as its share of the tracks.
        share = 1.0 if allowed is None else min(len(allowed) / max(len(tracks_index), 1), 1.0)
        next_round = _SegmentCandidates(windows_index, store, query, allowed, share, transform)
    fetch = max(4 * k + len(rules.exclude), 16)
    ceiling = max(FETCH_CEILING, 4 * k) + len(rules.exclude)
    # Rows read, exact scores and alignments so far: a round reads and scores only what it adds.
    rows: dict[int, Track] = {}
    exact: dict[int, float] = {}
    placed: dict[int, _Candidate] = {}  # segment candidates aligned so far, kept across rounds
    placing = partial(_placing, store=store, query=query, transform=transform, tolerance=tolerance, sampled=sampled)
    while True:
        found, complete = next_round(fetch)
        unplaced = False
        if mode == "tracks":
            rows.update(store.tracks_by_id([c.track_id for c in found if c.track_id not in rows]))
            candidates = _rescored(found, rows, query, transform, exact, rescore)
            chosen = _chosen(candidates, rows, rules, similarity, k)
            floor = bool(candidates) and _below_floor(candidates[-1].score, rules, similarity)
        else:
            choose = partial(_chosen, rules=rules, similarity=similarity, k=k)
            chosen, unplaced = placing(found, placed, rows, chosen=choose, k=k, ceiling=max(ALIGN_CEILING, 4 * k))
            floor = _below_floor(max(next_round.bound, 0.0), rules, similarity)
        if len(chosen) == k or floor or (complete and not unplaced):
            stopped = False
            break
        if fetch >= ceiling or unplaced:
            stopped = True  # more tracks might qualify, beyond what one request may read
            break
        fetch = min(fetch * 4, ceiling)
    placed_again = partial(align, tolerance=tolerance, sampled=sampled)
    finish = partial(_results, store, query, transform=transform, similarity=similarity, aligned=placed_again)
    return Ranked(chosen, rows, stopped, finish)


def _sorted_ids(ids) -> np.ndarray:
    """``ids`` as a sorted array of distinct int64s; one already so (as filters give them) is
    only checked, since sorting a million ids at every step of a song path adds up."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 1 and (len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))):
        return ids
    return np.unique(ids)


def _chosen(candidates: list[_Candidate], rows: dict[int, Track], rules: Rules, similarity, k: int) -> list[_Candidate]:
    """The first ``k`` of ``candidates`` (best first) that pass ``rules``."""
    accept = _accepts(rules, similarity)
    return [c for c in candidates if c.track_id in rows and accept(c, rows[c.track_id])][:k]


def _placing(
    found: list[_Candidate],
    placed: dict[int, _Candidate],
    rows: dict[int, Track],
    *,
    chosen: Callable[[list[_Candidate], dict[int, Track]], list[_Candidate]],
    k: int,
    ceiling: int,
    store: MetadataStore,
    query: Query,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    tolerance: float,
    sampled: bool,
) -> tuple[list[_Candidate], bool]:
    """The chosen of a round's segment candidates (best window pair first), aligned a batch at a
    time in that order until no candidate left can displace the k chosen: a track aligns at most
    as well as its best window pair. ``placed`` (alignments) and ``rows`` carry over from round to
    round. Also whether some were left unaligned at the ``ceiling`` of alignments.

    The bound is tighter for a track shorter than the clip: its windows meet only some of the
    clip's at any shift, the others scoring 0 (see ``align``), so it is aligned in the order of
    that bound and none is aligned once the bound of the next cannot displace the k chosen."""
    pending = [c for c in found if c.track_id not in placed]
    if not sampled and len(query.window_vectors) > 1:
        share = _shares(query, tolerance)
        durations = store.durations_of([c.track_id for c in pending])
        pending = sorted(
            (
                replace(c, score=_capped(c.score, share(durations.get(c.track_id)), len(query.window_vectors)))
                for c in pending
            ),
            key=lambda c: -c.score,
        )
    while True:
        aligned = sorted((placed[c.track_id] for c in found if c.track_id in placed), key=lambda c: -c.score)
        picked = chosen(aligned, rows)
        if not pending or (len(picked) == k and picked[-1].score >= pending[0].score):
            return picked, False
        if len(placed) >= ceiling:
            return picked, True
        batch, pending = pending[:ALIGN_BATCH], pending[ALIGN_BATCH:]
        rows.update(store.tracks_by_id([c.track_id for c in batch if c.track_id not in rows]))
        placed.update((c.track_id, c) for c in _aligned(batch, store, query, transform, tolerance, sampled))


def _shares(query: Query, tolerance: float) -> Callable[[float | None], float]:
    """The most of the query's windows that a track of a given duration can meet at one shift,
    as a share of them: a query window meets the track only if it lands within ``tolerance`` of
    one of its windows, whose starts lie within the track, and the query's windows start at least
    its hop apart. An unknown duration bounds nothing."""
    starts = np.sort(query.window_times[:, 0])
    hop = float(np.diff(starts).min())
    count = len(starts)
    if hop <= 0:
        return lambda duration: 1.0

    def share(duration: float | None) -> float:
        if duration is None or not duration > 0:
            return 1.0
        return min(1.0, (math.floor((duration + 2 * tolerance + 1e-6) / hop) + 1) / count)

    return share


def _capped(pair: float, share: float, count: int) -> float:
    """The best alignment score a track can have whose best window pair with the query scores
    ``pair`` and whose windows meet at most ``share`` of the query's ``count`` windows (the rest
    score 0): all of those at ``pair``, or, were it negative, just one."""
    return pair * share if pair > 0 else pair / count


def _results(
    store: MetadataStore,
    query: Query,
    chosen: list[_Candidate],
    rows: dict[int, Track],
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    similarity: Callable[[float], float] | None,
    aligned: Callable,
) -> list[SearchResult]:
    windows = store.windows_of([c.track_id for c in chosen])
    groups = store.duplicate_groups([rows[c.track_id].duplicate_of or c.track_id for c in chosen])
    results = []
    for candidate in chosen:
        offset = None
        times, vectors = windows[candidate.track_id]
        if transform is not None:
            vectors = transform(vectors)
        if candidate.aligned:  # placed where its alignment puts the query
            _, match, query_window, offset = aligned(times, vectors, query)
        else:
            # Whole-track hit: the best pair of windows says where it matches.
            pairs = vectors @ query.window_vectors.T
            best, query_window = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
            match = times[best]
            if query.clip:  # where the clip starts, as segment search would place it
                offset = aligned(times, vectors, query).offset
        track = rows[candidate.track_id]
        recording = groups.get(track.duplicate_of or track.id, [])
        results.append(
            SearchResult(
                track_id=candidate.track_id,
                path=track.path,
                title=track.title,
                artist=track.artist,
                album=track.album,
                score=candidate.score,
                match=TimeRange(round(float(match[0]), 3), round(float(match[1]), 3)),
                query=TimeRange(*(round(float(t), 3) for t in query.placing()[1][query_window])),
                duration=round(track.duration, 3),
                alternates=[member.path for member in recording if member.id != track.id],
                similarity=None if similarity is None else similarity(candidate.score),
                offset=round(float(offset), 3) if query.clip and offset is not None else None,
            )
        )
    return results
