"""The same recording in several files (other formats, bitrates, sample rates, a trimmed start),
found by its window vectors.

Two files hold one recording when their durations agree within DURATION_TOLERANCE_S and their
windows, lined up at the shift that fits best, lie closer than the catalog's rule allows:

- the shorter file's windows are placed on the other's time line at every shift from
  -SHIFT_SLACK_S to the difference of the durations + SHIFT_SLACK_S (a start trimmed by that
  much, give or take codec delays), SHIFT_STEP_S apart; a window that lands between two of the
  other's windows that touch or overlap is compared with the normalised blend of both, weighted
  by where it lands, so a copy trimmed by 1 s is compared with what the original holds at that
  place, not with windows 1 s off;
- at a shift, a window's distance is 1 - cosine; the shift's distance is the WINDOW_QUANTILE of
  its windows' distances (nine windows in ten at least that close), counted only when
  COVERAGE of the shorter file's windows landed somewhere; the pair's distance is the smallest
  over the shifts.

How close files of one recording come, and how close distinct pieces come, depends on the model
and the music (with the spectral baseline on real recordings re-encodes lie within 0.004 of their
source but for a few, a 1 s trimmed copy within 0.073, distinct pieces beyond 0.17; with a small
random model all of it is ten times closer), so the limit is set on each catalog, from copies of
its own tracks measured with its model and from how close its distinct tracks come: see
DuplicateRule.fitted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from mertsearch.encoder.pooling import blended_cosines
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import VectorIndex

# Durations of two files of one recording differ by at most this: a trimmed start or end, and the
# few milliseconds codecs add or drop.
DURATION_TOLERANCE_S = 2.5
# The shorter file's start is looked for between the longer one's start and the difference of
# their durations (a trimmed start), this much beyond either end (codecs' delays), on a grid of this step.
SHIFT_SLACK_S = 0.25
SHIFT_STEP_S = 0.05
WINDOW_QUANTILE = 0.9
COVERAGE = 2 / 3
# A window lands on another when their starts are this close (half a step of the shift grid)...
LANDING_S = SHIFT_STEP_S / 2 + 1e-6
# ...or, where it cannot be blended (before the first window, after the last, between windows
# that do not touch as in a catalog of samples, whose windows' places follow the duration), this close.
NEAR_S = SHIFT_SLACK_S
# The nearest tracks of a new file (in the track index) that are compared with it window by window.
NEIGHBOURS = 8

# A duplicate lies within COPY_MARGIN times the farthest copy measured on the catalog's own tracks:
# room for the copies of its other tracks, which lie further than the few excerpts measured (on
# real recordings the farthest of eight whole trimmed copies lay three times as far as the
# farthest of three trimmed excerpts, the median 1.7 times)...
COPY_MARGIN = 4.0
# ...and at least MARGIN times closer than the catalog's distinct tracks come: the FIT_QUANTILE of
# each track's distance to its nearest surely distinct track (one whose duration differs by more
# than DURATION_TOLERANCE_S, so it cannot be a copy), measured with all the room to shift that any
# two files get...
MARGIN = 2.0
FIT_QUANTILE = 0.05
# ...and never further apart than this, whatever the catalog (a fixed floor of agreement: nine
# windows in ten within cosine 0.9).
MAX_DISTANCE = 0.1
# Where no copy could be measured (a catalog fitted without its model), a catalog with fewer
# tracks than this whose nearest distinct track could be measured links only files this close
# (about what lossless copies and high-bitrate re-encodes give); copies always may lie this close.
MIN_FIT_TRACKS = 10
SMALL_CATALOG_DISTANCE = 0.001
# What a rule's limit was set by (DuplicateRule.basis).
BY_COPIES, BY_DISTINCT, BY_FLOOR, BY_SMALL = "copies", "nearest distinct", "floor", "small catalog"
# The fit measures at most this many tracks (a fixed sample, so a repeated fit gives the same rule).
FIT_TRACKS = 2000
# A catalog whose track count moved this much (as a share) since the fit gets a new one.
REFIT_CHANGE = 0.1
META_KEY = "duplicate_rule"


@dataclass(frozen=True)
class Windows:
    """One file's windows as compared: starts and ends in seconds, unit vectors, its duration."""

    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray
    duration: float

    @classmethod
    def stored(cls, times: np.ndarray, vectors: np.ndarray, duration: float) -> Windows:
        """From what MetadataStore.windows_of gives: times shaped (n, 2), vectors (n, dim)."""
        return cls(times[:, 0], times[:, 1], vectors, float(duration))


def aligned_distance(a: Windows, b: Windows, *, most_shift_s: float | None = None) -> tuple[float, float]:
    """(distance, shift) of two files' windows lined up at the best shift (see the module's
    docstring); the distance is inf when no shift lines up enough windows. ``shift`` is where
    the shorter file's start lies in the other's time (seconds), looked for from -SHIFT_SLACK_S
    to the difference of the durations (or ``most_shift_s``) plus SHIFT_SLACK_S."""
    swapped = a.duration > b.duration
    if swapped:
        a, b = b, a
    most = (b.duration - a.duration if most_shift_s is None else most_shift_s) + SHIFT_SLACK_S
    shifts = SHIFT_STEP_S * np.arange(-round(SHIFT_SLACK_S / SHIFT_STEP_S), int(most / SHIFT_STEP_S + 1e-9) + 1)
    n, m = len(a.starts), len(b.starts)
    at = a.starts[:, None] + shifts[None, :]  # (n, shifts): where each window lands in b
    gram = a.vectors.astype(np.float64) @ b.vectors.astype(np.float64).T
    left = np.searchsorted(b.starts, at, side="right") - 1  # the last b window starting at or before
    lo, hi = np.clip(left, 0, m - 1), np.clip(left + 1, 0, m - 1)
    rows = np.arange(n)[:, None]
    off_lo = np.where(left >= 0, np.abs(at - b.starts[lo]), np.inf)
    off_hi = np.where(left + 1 < m, np.abs(b.starts[hi] - at), np.inf)
    touching = (left >= 0) & (left + 1 < m) & (b.starts[hi] <= b.ends[lo] + LANDING_S)
    between = touching & (off_lo > LANDING_S) & (off_hi > LANDING_S)
    near = ~between & (np.minimum(off_lo, off_hi) <= np.where(touching, LANDING_S, NEAR_S))
    on_lo = near & (off_lo <= off_hi)
    on_hi = near & (off_hi < off_lo)
    gap = np.where(between, b.starts[hi] - b.starts[lo], 1.0)
    weight = np.clip((at - b.starts[lo]) / gap, 0.0, 1.0)
    blended = blended_cosines(b.vectors, lo, hi, weight, gram[rows, lo], gram[rows, hi])
    cosine = np.where(on_lo, gram[rows, lo], np.where(on_hi, gram[rows, hi], np.where(between, blended, np.nan)))
    distances = np.clip(1.0 - cosine, 0.0, 2.0)
    landed = (~np.isnan(cosine)).sum(axis=0)
    enough = (landed >= max(1, int(np.ceil(COVERAGE * n)))).nonzero()[0]
    if not len(enough):
        return float("inf"), 0.0
    per_shift = np.nanquantile(distances[:, enough], WINDOW_QUANTILE, axis=0)
    best = int(np.argmin(per_shift))
    shift = float(shifts[enough[best]])
    return float(per_shift[best]), -shift if swapped else shift


@dataclass(frozen=True)
class CopyDistances:
    """How far copies of the catalog's own tracks lie from them (see mertsearch.indexer.copies):
    the farthest aligned distance of each kind of copy, over excerpts (the longest ``excerpt_s``)
    of ``tracks`` tracks, under the searched ``layers``, when the catalog held ``catalog_tracks``;
    and how close two of those excerpts holding distinct music came (None: no such two)."""

    distances: dict[str, float]
    tracks: int
    layers: list[int]
    catalog_tracks: int
    excerpt_s: float
    distinct: float | None = None

    @property
    def farthest(self) -> float | None:
        return max(self.distances.values()) if self.distances else None


@dataclass(frozen=True)
class DuplicateRule:
    """The largest aligned distance of two files of one recording in a catalog, and where it comes from."""

    distance: float = SMALL_CATALOG_DISTANCE
    # The FIT_QUANTILE of the tracks' distances to their nearest surely distinct track (None: unmeasured).
    nearest_distinct: float | None = None
    measured_tracks: int = 0  # tracks whose nearest distinct track was measured
    catalog_tracks: int = 0  # tracks in the catalog when the rule was fitted
    copies: CopyDistances | None = None  # None: no copy measured (a fit without the model)
    basis: str = BY_SMALL  # which bound set ``distance``: BY_COPIES, BY_DISTINCT, BY_FLOOR or BY_SMALL

    @classmethod
    def fitted(cls, nearest: list[float], *, catalog_tracks: int, copies: CopyDistances | None = None) -> DuplicateRule:
        """The rule for a catalog whose tracks' nearest distinct tracks lie at ``nearest`` and whose
        copies lie at ``copies``: the tightest of COPY_MARGIN times the farthest copy (at least
        SMALL_CATALOG_DISTANCE), MARGIN times closer than distinct music comes (the FIT_QUANTILE
        of ``nearest``, or the measured excerpts of distinct tracks where they come closer) and
        MAX_DISTANCE. Without copies, the distinct tracks set it once MIN_FIT_TRACKS of them were
        measured."""
        finite = [d for d in nearest if np.isfinite(d)]
        low = float(np.quantile(finite, FIT_QUANTILE)) if finite else None
        measured = copies is not None and copies.farthest is not None
        if not measured and len(finite) < MIN_FIT_TRACKS:
            small = SMALL_CATALOG_DISTANCE
            return cls(small, measured_tracks=len(finite), catalog_tracks=catalog_tracks, copies=copies)
        bounds = {BY_FLOOR: MAX_DISTANCE}
        distinct = [low] if low is not None else []
        if measured:
            bounds[BY_COPIES] = max(SMALL_CATALOG_DISTANCE, COPY_MARGIN * copies.farthest)
            distinct += [copies.distinct] if copies.distinct is not None else []
        if distinct:
            bounds[BY_DISTINCT] = min(distinct) / MARGIN
        basis = min(bounds, key=bounds.__getitem__)
        return cls(
            distance=bounds[basis],
            nearest_distinct=low,
            measured_tracks=len(finite),
            catalog_tracks=catalog_tracks,
            copies=copies,
            basis=basis,
        )

    def links(self, a: Windows, b: Windows) -> float | None:
        """The aligned distance of two files when they hold one recording under this rule, else None."""
        if abs(a.duration - b.duration) > DURATION_TOLERANCE_S:
            return None
        distance, _ = aligned_distance(a, b)
        return distance if distance <= self.distance else None

    def stale(self, tracks: int) -> bool:
        """Whether a catalog of ``tracks`` tracks has changed enough since the fit to fit again."""
        if tracks == self.catalog_tracks:
            return False
        return self.catalog_tracks == 0 or abs(tracks - self.catalog_tracks) > REFIT_CHANGE * self.catalog_tracks

    def as_meta(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_meta(cls, text: str | None) -> DuplicateRule | None:
        if text is None:
            return None
        fields = json.loads(text)
        if "basis" not in fields:  # stored by an earlier version: fitted on the distinct tracks alone
            fitted = fields.get("nearest_distinct") is not None
            fields["basis"] = (BY_FLOOR if fields["distance"] >= MAX_DISTANCE else BY_DISTINCT) if fitted else BY_SMALL
        copies = fields.pop("copies", None)
        return cls(**fields, copies=None if copies is None else CopyDistances(**copies))

    def describe(self) -> str:
        if self.basis == BY_SMALL:
            return (
                f"aligned windows within {self.distance:.2g} (a small catalog's limit: {self.measured_tracks} tracks "
                f"with a measured nearest distinct track, fewer than {MIN_FIT_TRACKS}, and no copy measured)"
            )
        why = {
            BY_COPIES: f"{COPY_MARGIN:g} times the farthest copy of the catalog's own tracks",
            BY_DISTINCT: f"{MARGIN:g} times closer than the nearest distinct tracks",
            BY_FLOOR: "the most that is ever allowed",
        }[self.basis]
        parts = []
        copies = self.copies
        if copies is not None and copies.farthest is not None:
            found = ", ".join(f"{name} {distance:.2g}" for name, distance in copies.distances.items())
            parts.append(f"copies of excerpts of up to {copies.excerpt_s:g} s of {copies.tracks} tracks: {found}")
            if copies.distinct is not None:
                parts.append(f"the nearest two excerpts of distinct tracks come to {copies.distinct:.2g}")
        if self.nearest_distinct is not None:
            parts.append(
                f"the nearest distinct tracks of {self.measured_tracks} tracks come to "
                f"{self.nearest_distinct:.2g} at {FIT_QUANTILE:.0%}"
            )
        parts.append(f"at most {MAX_DISTANCE:g}")
        return f"aligned windows within {self.distance:.2g}: {why} ({'; '.join(parts)})"


def stored_rule(store: MetadataStore) -> DuplicateRule | None:
    return DuplicateRule.from_meta(store.meta(META_KEY))


def find_leader(
    index: VectorIndex,
    store: MetadataStore,
    *,
    exclude: int | None,
    vector: np.ndarray,
    windows: Windows,
    rule: DuplicateRule,
) -> int | None:
    """The leading track of the recording a new file (these vectors) is another file of, or None.

    ``vector`` is transformed like the index; ``windows`` holds the raw window vectors; the
    track ``exclude`` (the file's own older version) is never compared with it. Of the nearest
    tracks whose duration fits, the one whose windows lie closest decides. When that track is
    one of the recording ``exclude`` leads, the answer is ``exclude`` itself: the file, stored
    again, still holds the recording it leads, and its group stays as it is (see
    MetadataStore.put_track).
    """
    _scores, ids = index.search(vector[None, :], NEIGHBOURS)
    candidates = [int(i) for i in ids[0] if i >= 0 and i != exclude]
    rows = store.tracks_by_id(candidates)
    fitting = [i for i in candidates if i in rows and abs(rows[i].duration - windows.duration) <= DURATION_TOLERANCE_S]
    if not fitting:
        return None
    stored = store.windows_of(fitting)
    best, best_distance = None, np.inf
    for candidate in fitting:
        if candidate not in stored:
            continue
        distance = rule.links(windows, Windows.stored(*stored[candidate], rows[candidate].duration))
        if distance is not None and distance < best_distance:
            best, best_distance = candidate, distance
    if best is None:
        return None
    return rows[best].duplicate_of or best
