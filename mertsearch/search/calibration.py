"""A similarity in [0, 1] for every result: the share of random pairs of the catalog that score
lower, under the scoring of the result's mode.

Raw scores depend on the model, the layers and the transform (random pairs of tracks score a
cosine of about 0.98 with MERT, 0.64 with the spectral encoder, about 0 centered), so no fixed
score means the same in two catalogs. The share of random pairs a score beats does: 0.5 is a
typical random pair, and the same recording beats them all (1.0).

A calibration is fitted from a bounded, seeded sample of the stored vectors (no model), once per
mode, as that mode scores a result:

- ``tracks``: the cosine of the pooled vectors of two random tracks;
- ``segments``: the alignment score (:func:`mertsearch.search.engine.align`) of a clip of
  ``CLIP_S`` seconds of one random track (its stored windows) along another random track.

Two files of the same recording never make a pair. The sample's scores are kept as quantiles at
``LEVELS`` even steps; a score's similarity is read off them, linearly between two steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mertsearch.encoder.pooling import l2_normalize
from mertsearch.search.engine import MODES, Query, align
from mertsearch.storage.store import MetadataStore, from_blob

# The meta key a catalog's calibration is stored under (JSON; "null": none).
META_KEY = "calibration"
# Random pairs scored per mode: enough for a similarity to +-0.01 in the middle of the range,
# few enough to fit at the end of every ingest that grew the catalog (no model runs).
TRACK_PAIRS = 4000
SEGMENT_PAIRS = 2000
# Tracks whose vectors the pairs are drawn from: the track vectors of this many, and the windows
# of this many for segment pairs (read a few tracks at a time).
SAMPLE_TRACKS = 2000
SEGMENT_TRACKS = 250
CHUNK = 32
# Aligning a clip along a track tries about one shift per (track window, clip window) and each
# shift works on all of them: its cost grows as n * (1 + n / SHIFT_ARRAY) for n such window pairs.
# Segment pairs are scored, as drawn, until they add up to SEGMENT_WORK: all 2,000 where tracks
# last minutes (a 4-minute track: 96 window pairs at 5 s hops), fewer where they last an hour and
# more, never fewer than MIN_SEGMENT_PAIRS.
SHIFT_ARRAY = 500
SEGMENT_WORK = 600_000
MIN_SEGMENT_PAIRS = 100
# The length of the clips of segment pairs: a typical query clip, and `eval`'s excerpts.
CLIP_S = 10.0
# Below this many tracks a catalog gets no calibration (too few pairs to say what is typical).
MIN_TRACKS = 6
# Refit once the catalog has this many times the tracks it was fitted on (or this many times fewer).
GROWTH = 1.5
LEVELS = 1001
SEED = 0


@dataclass(frozen=True)
class Calibration:
    """Quantiles of random-pair scores per mode, and what they were fitted on: the track count,
    the searched layers and the transform's file (None: no transform). A calibration fitted
    under other layers or another transform says nothing of the present scores."""

    quantiles: dict[str, np.ndarray]  # mode -> LEVELS scores, ascending
    pairs: dict[str, int]
    fitted_on_tracks: int
    layers: list[int]
    transform: str | None
    clip_s: float = CLIP_S
    seed: int = SEED

    def similarity(self, mode: str, score: float) -> float:
        """The share of random pairs scoring below ``score`` (0 below them all, 1 above them all)."""
        quantiles = self.quantiles[mode]
        above = int(np.searchsorted(quantiles, score, side="right"))
        if above == 0:
            return 0.0
        if above == len(quantiles):
            return 1.0
        low, high = float(quantiles[above - 1]), float(quantiles[above])
        step = 1.0 / (len(quantiles) - 1)
        return (above - 1 + (score - low) / (high - low)) * step if high > low else (above - 1) * step

    def scorer(self, mode: str) -> Callable[[float], float]:
        """Scores of ``mode`` to similarities as results show them (4 decimals), so a floor set to
        a similarity a result showed keeps that result."""
        return lambda score: round(self.similarity(mode, score), 4)

    def fits(self, layers: list[int], transform: str | None) -> bool:
        """Whether the scores of these layers and this transform are the ones calibrated."""
        return list(layers) == list(self.layers) and transform == self.transform

    def due(self, tracks: int, layers: list[int], transform: str | None) -> bool:
        """Whether to fit again: other layers or transform, or a catalog grown (or shrunk) by half."""
        return not self.fits(layers, transform) or not (
            self.fitted_on_tracks / GROWTH < tracks < self.fitted_on_tracks * GROWTH
        )

    def summary(self) -> dict:
        """What `info` and `reindex` say of it."""
        return {
            "fitted_on_tracks": self.fitted_on_tracks,
            "pairs": dict(self.pairs),
            "median_score": {mode: round(float(q[len(q) // 2]), 4) for mode, q in self.quantiles.items()},
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "quantiles": {mode: [round(float(x), 6) for x in q] for mode, q in self.quantiles.items()},
                "pairs": self.pairs,
                "fitted_on_tracks": self.fitted_on_tracks,
                "layers": list(self.layers),
                "transform": self.transform,
                "clip_s": self.clip_s,
                "seed": self.seed,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> Calibration | None:
        """The calibration stored as ``text``; None for none (or one this version cannot read)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            if data is None:
                return None
            quantiles = {mode: np.asarray(data["quantiles"][mode], dtype=np.float64) for mode in MODES}
            return cls(
                quantiles=quantiles,
                pairs={mode: int(data["pairs"][mode]) for mode in MODES},
                fitted_on_tracks=int(data["fitted_on_tracks"]),
                layers=[int(layer) for layer in data["layers"]],
                transform=data["transform"],
                clip_s=float(data.get("clip_s", CLIP_S)),
                seed=int(data.get("seed", SEED)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def fit(
    store: MetadataStore,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    layers: list[int],
    transform_file: str | None,
    tolerance: float,
    sampled: bool,
    seed: int = SEED,
) -> Calibration | None:
    """A calibration of the catalog in ``store`` as searched through ``transform`` (None below
    MIN_TRACKS tracks). ``tolerance`` and ``sampled`` as for :func:`align`. The same stored
    vectors and seed give the same calibration."""
    ids = store.ids("tracks")
    if len(ids) < MIN_TRACKS:
        return None
    scores = {
        "tracks": track_pair_scores(store, transform, ids=ids, pairs=TRACK_PAIRS, seed=seed),
        "segments": segment_pair_scores(
            store, transform, ids=ids, pairs=SEGMENT_PAIRS, seed=seed, tolerance=tolerance, sampled=sampled
        ),
    }
    if any(len(found) < 2 for found in scores.values()):
        return None  # e.g. every track another file of one recording
    levels = np.linspace(0.0, 1.0, LEVELS)
    return Calibration(
        quantiles={mode: np.quantile(found, levels) for mode, found in scores.items()},
        pairs={mode: len(found) for mode, found in scores.items()},
        fitted_on_tracks=len(ids),
        layers=list(layers),
        transform=transform_file,
        seed=seed,
    )


def _random_pairs(count: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``pairs`` random ordered pairs of distinct positions among ``count``, shaped (pairs, 2)."""
    first = rng.integers(0, count, size=pairs)
    return np.stack([first, (first + rng.integers(1, count, size=pairs)) % count], axis=1)


def _track_pairs(count: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Every pair of distinct positions among ``count`` when there are no more than ``pairs``
    of them (a small catalog: its exact distribution), else ``pairs`` random ones."""
    if count * (count - 1) // 2 > pairs:
        return _random_pairs(count, pairs, rng)
    first, second = np.triu_indices(count, 1)
    return np.stack([first, second], axis=1)


def _sample(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(ids, size=min(size, len(ids)), replace=False))


def track_pair_scores(
    store: MetadataStore,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    ids: np.ndarray,
    pairs: int,
    seed: int,
) -> np.ndarray:
    """Cosines of up to ``pairs`` random pairs of tracks among ``ids``, of two recordings, as
    whole-track search scores them (the transformed pooled vectors)."""
    rng = np.random.default_rng(seed)
    rows = store.tracks_by_id(_sample(ids, SAMPLE_TRACKS, rng).tolist())
    chosen = sorted(rows)
    if len(chosen) < 2:
        return np.empty(0)
    vectors = transform(np.stack([from_blob(rows[i].vector) for i in chosen]))
    recordings = np.array([rows[i].duplicate_of or i for i in chosen])
    drawn = _track_pairs(len(chosen), pairs, rng)
    drawn = drawn[recordings[drawn[:, 0]] != recordings[drawn[:, 1]]]
    return np.einsum("ij,ij->i", vectors[drawn[:, 0]], vectors[drawn[:, 1]]).astype(np.float64)


def segment_pair_scores(
    store: MetadataStore,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    ids: np.ndarray,
    pairs: int,
    seed: int,
    tolerance: float,
    sampled: bool,
    clip_s: float = CLIP_S,
) -> np.ndarray:
    """Alignment scores of up to ``pairs`` random (clip of one track, another track) pairs among
    ``ids``, of two recordings, as segment search scores a clip. A clip is the stored windows of
    ``clip_s`` seconds from a random window on, timed from its start.

    Where tracks are long, fewer pairs are scored (see SEGMENT_WORK), from their durations, before
    any window is read. The windows are read a few tracks at a time (the clips' tracks, then the
    tracks they are aligned along), so memory holds CHUNK tracks' windows and the clips.
    """
    rng = np.random.default_rng(seed)
    rows = store.tracks_by_id(_sample(ids, SEGMENT_TRACKS, rng).tolist())
    chosen = np.array(sorted(rows), dtype=np.int64)
    if len(chosen) < 2:
        return np.empty(0)
    recordings = np.array([rows[i].duplicate_of or i for i in chosen])
    # (clip's track, aligned track) by id; drawn even in a small catalog, where the clips differ
    positions = _random_pairs(len(chosen), pairs, rng)
    picks = rng.random(len(positions))  # where in its track each clip starts, as a share of the starts
    apart = recordings[positions[:, 0]] != recordings[positions[:, 1]]
    drawn, picks = chosen[positions[apart]], picks[apart]
    hop = 2 * tolerance
    window_pairs = np.array([1.0 if sampled else rows[i].duration / hop * max(clip_s / hop, 1.0) for i in chosen])
    work = np.cumsum([n * (1 + n / SHIFT_ARRAY) for n in window_pairs[np.searchsorted(chosen, drawn[:, 1])]])
    count = max(int(np.searchsorted(work, SEGMENT_WORK, side="right")), MIN_SEGMENT_PAIRS)
    drawn, picks = drawn[:count], picks[:count]
    clips: dict[int, Query] = {}
    for part in _parts(np.unique(drawn[:, 0])):
        windows = store.windows_of(part.tolist())
        for number in np.flatnonzero(np.isin(drawn[:, 0], part)):
            if int(drawn[number, 0]) in windows:  # else gone meanwhile
                times, vectors = windows[int(drawn[number, 0])]
                clips[int(number)] = _clip(times, transform(vectors), picks[number], clip_s)
    along: dict[int, list[int]] = {}
    for number in clips:
        along.setdefault(int(drawn[number, 1]), []).append(number)
    scores = []
    for part in _parts(np.array(sorted(along), dtype=np.int64)):
        for track_id, (times, vectors) in store.windows_of(part.tolist()).items():
            vectors = transform(vectors)
            for number in along[track_id]:
                scores.append(align(times, vectors, clips[number], tolerance, sampled=sampled)[0])
    return np.array(scores, dtype=np.float64)


def _parts(track_ids: np.ndarray):
    for start in range(0, len(track_ids), CHUNK):
        yield track_ids[start : start + CHUNK]


def _clip(times: np.ndarray, vectors: np.ndarray, pick: float, clip_s: float) -> Query:
    """The windows of ``clip_s`` seconds from the ``pick`` share of the track's possible clip
    starts on (windows that start where a whole clip still fits; the first when none does)."""
    fits = np.flatnonzero(times[:, 0] + clip_s <= times[-1, 1] + 1e-6)
    first = int(fits[min(int(pick * len(fits)), len(fits) - 1)]) if len(fits) else 0
    start = times[first, 0]
    inside = np.flatnonzero((times[:, 0] >= start) & (times[:, 1] <= start + clip_s + 1e-6))
    inside = inside if len(inside) else np.array([first])
    window_vectors = vectors[inside]
    return Query(l2_normalize(window_vectors.mean(axis=0)), window_vectors, times[inside] - start)
