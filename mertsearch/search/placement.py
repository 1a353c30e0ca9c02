"""Where a clip lies in a track: the query's windows aligned along the track's stored windows.

Two steps, both on the stored vectors (the track's audio is never read again):

- **Which stretch**: every shift of the query along the track that puts one of its windows on a
  stored window is scored by the mean over all the query's windows of the best stored window
  starting within ``tolerance`` (half the catalog's hop) of where each lands. A true excerpt scores
  high at its own shift for all its windows at once, where a chance resemblance lights up one pair.
  That score ranks the track. A clip's stretch is then chosen on a finer grid (blended_stretch):
  each query window is compared with the blend of the two stored windows it lands between, so the
  true stretch, which seldom starts on the grid, is not outscored by a passage elsewhere that only
  resembles the clip but happens to line up with stored windows (repeats, a noisy or mixed clip).
- **Where exactly**: near the chosen stretch (within a quarter hop for a clip), each shift that
  lines some query windows up with stored windows is scored by the similarity of just those
  windows, since a window half a hop off says
  little about a fraction of a hop. Similarity falls off about linearly with the time between two
  windows (they share less and less audio), so the best of those shifts and its nearest neighbours
  either side fit a V, whose apex is the estimate.

The clip's probe window (one more window half a hop in, off the catalog's grid) gives the second
step shifts half a hop apart instead of a hop, which is what brings the estimate within a fraction
of a second; it also helps the first step tell a repeated passage from the one the clip comes from.
The score that ranks the track is the first step's over the clip's own windows alone, so a copy of
a stored track still scores 1 and scores mean what they meant without the probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from mertsearch.encoder.pooling import blended_cosines

if TYPE_CHECKING:
    from mertsearch.search.engine import Query

# Seconds within which a query window counts as starting where a stored window starts.
LINED_UP = 0.05
# The grid of shifts on which a clip's stretch is chosen (blended_stretch), near how many of the
# best shifts of the coarser grid that lines windows up.
BLEND_STEP = 0.05
BLEND_NEAR = 16


class Alignment(NamedTuple):
    score: float
    match: tuple[float, float]  # where the best query window lies in the track
    query_window: int  # of the query's windows, its probes after its own windows
    offset: float  # where the clip starts in the track


def align(
    track_times: np.ndarray, track_vectors: np.ndarray, query: Query, tolerance: float, *, sampled: bool = False
) -> Alignment:
    """The query's best alignment along a track (see the module's description).

    A query window that lands outside the track scores 0. ``sampled``: the track's windows are a
    sample of it (``index --sample``), so a query window landing between them says nothing; a
    shift scores the mean over the query windows that land on one.
    """
    vectors, times = query.placing()
    pairs = track_vectors @ vectors.T  # (track windows, query windows); the probes' last
    track_starts, query_starts = track_times[:, 0], times[:, 0]
    shifts = np.unique(np.round((track_starts[:, None] - query_starts[None, :]).ravel(), 2))
    landed = _landed(track_starts, pairs, query_starts, shifts, tolerance)
    grid = _mean(landed, sampled)
    stretch = float(shifts[int(np.argmax(grid))])
    score = aligned_score(track_times, track_vectors, query, tolerance, sampled=sampled)
    if query.clip and not sampled:
        # The finer grid only near the best shifts of this one: all of it would cost (track +
        # clip length) / BLEND_STEP shifts x the clip's windows (a 2 h mix against a 10 min
        # clip: gigabytes), and the true stretch lies within half a hop of a shift of this grid.
        near = shifts[np.argsort(-grid, kind="stable")[:BLEND_NEAR]]
        stretch = blended_stretch(track_times, track_vectors, pairs, query_starts, near=near, within=tolerance)
    span = tolerance
    if query.clip and not sampled:
        # A clip's stretch, chosen by blended_stretch to a fraction of a hop, is only refined nearby:
        # within a quarter hop, or as far as the nearest shift that lines windows up.
        lined_up = np.round((track_starts[:, None] - query_starts[None, :]).ravel(), 2)
        span = max(tolerance / 2, float(np.abs(lined_up - stretch).min()))
    offset = refine(track_starts, pairs, query_starts, stretch, span=span, reach=2 * tolerance)
    near = np.abs(track_starts[:, None] - (query_starts[None, :] + stretch)) <= tolerance
    _, query_window = np.unravel_index(int(np.argmax(np.where(near, pairs, -np.inf))), pairs.shape)
    length = times[query_window, 1] - times[query_window, 0]
    end = float(track_times[:, 1].max())
    start = min(max(query_starts[query_window] + offset, 0.0), max(end - length, 0.0))
    return Alignment(score, (start, start + length), int(query_window), min(max(offset, 0.0), end))


def aligned_score(
    track_times: np.ndarray, track_vectors: np.ndarray, query: Query, tolerance: float, *, sampled: bool = False
) -> float:
    """The score of ``align`` alone, what ranks a track: the best over the shifts that line one of
    the query's own windows up with a stored one of the mean over its own windows (not its probes)
    of what each meets there. A fraction of align's cost, which mostly goes to placing the clip:
    a ranking scores its candidates with this and places only those it returns."""
    track_starts, query_starts = track_times[:, 0], query.window_times[:, 0]
    shifts = np.unique(np.round((track_starts[:, None] - query_starts[None, :]).ravel(), 2))
    landed = _landed(track_starts, track_vectors @ query.window_vectors.T, query_starts, shifts, tolerance)
    return float(_mean(landed, sampled).max())


def blended_stretch(
    track_times: np.ndarray,
    track_vectors: np.ndarray,
    pairs: np.ndarray,
    query_starts: np.ndarray,
    *,
    near: np.ndarray | None = None,
    within: float = 0.0,
) -> float:
    """The shift, on a BLEND_STEP grid over the whole track (or only within ``within`` seconds of
    the shifts ``near``), at which the query's windows best meet what the track holds where they
    land: a window landing between two stored windows that touch is compared with their normalised
    blend, weighted by where it lands, so the true stretch scores as if a window had been stored
    right there, where a chance resemblance elsewhere only meets the grid. A window landing outside
    the track, or between windows that do not touch, scores 0."""
    order = np.argsort(track_times[:, 0], kind="stable")
    starts, ends, vectors, pairs = track_times[order, 0], track_times[order, 1], track_vectors[order], pairs[order]
    count = len(starts)
    origin = starts[0] - query_starts.max()
    steps = int(np.ceil((starts[-1] - query_starts.min() + BLEND_STEP - origin) / BLEND_STEP))  # as np.arange
    if near is None:
        at_steps = np.arange(steps)
    else:
        # The same grid's points, so a shift scores exactly what it scores on the whole grid.
        reach = int(np.ceil(within / BLEND_STEP))
        centres = np.round((np.asarray(near) - origin) / BLEND_STEP).astype(np.int64)
        at_steps = np.unique((centres[:, None] + np.arange(-reach, reach + 1)[None, :]).ravel())
        at_steps = at_steps[(at_steps >= 0) & (at_steps < steps)]
        if not len(at_steps):
            at_steps = np.arange(steps)
    shifts = origin + at_steps * BLEND_STEP
    at = query_starts[None, :] + shifts[:, None]  # (shifts, query windows): where each lands
    left = np.searchsorted(starts, at + 1e-9, side="right") - 1
    lo, hi = np.clip(left, 0, count - 1), np.clip(left + 1, 0, count - 1)
    gap = np.maximum(starts[hi] - starts[lo], 1e-9)
    weight = np.clip((at - starts[lo]) / gap, 0.0, 1.0)
    columns = np.arange(len(query_starts))[None, :]
    blended = blended_cosines(vectors, lo, hi, weight, pairs[lo, columns], pairs[hi, columns])
    on_start = np.abs(at - starts[lo]) <= LINED_UP
    touching = (left >= 0) & (left + 1 < count) & (starts[hi] <= ends[lo] + LINED_UP)
    value = np.where(on_start & (left >= 0), pairs[lo, columns], np.where(touching, blended, 0.0))
    return float(shifts[int(np.argmax(value.mean(axis=1)))])


def _landed(
    track_starts: np.ndarray, pairs: np.ndarray, query_starts: np.ndarray, shifts: np.ndarray, tolerance: float
) -> np.ndarray:
    """(shifts, query windows): at each shift, each query window's best track window starting
    within ``tolerance`` of where it lands; -inf where none does.

    The track windows within reach of a landing point are a run of the sorted starts, a few long at
    most, so this costs shifts x query windows x that run, not shifts x all pairs.
    """
    order = np.argsort(track_starts, kind="stable")
    starts, sorted_pairs = track_starts[order], pairs[order]
    landing = query_starts[None, :] + shifts[:, None]
    first = np.searchsorted(starts, landing - tolerance - 1e-9, side="left")
    last = np.searchsorted(starts, landing + tolerance + 1e-9, side="right")
    best = np.full(landing.shape, -np.inf)
    columns = np.broadcast_to(np.arange(len(query_starts))[None, :], landing.shape)
    for step in range(int((last - first).max(initial=0))):
        row = first + step
        values = sorted_pairs[np.minimum(row, len(starts) - 1), columns]
        best = np.maximum(best, np.where(row < last, values, -np.inf))
    return best


def _mean(landed: np.ndarray, sampled: bool) -> np.ndarray:
    """Each shift's score: the mean over the query windows, 0 for one landing on no track window,
    or, in a ``sampled`` track, over those that land on one (-inf where none does)."""
    hit = np.isfinite(landed)
    if not sampled:
        return np.where(hit, landed, 0.0).mean(axis=1)
    counts = hit.sum(axis=1)
    return np.where(counts > 0, np.where(hit, landed, 0.0).sum(axis=1) / np.maximum(counts, 1), -np.inf)


def refine(
    track_starts: np.ndarray, pairs: np.ndarray, query_starts: np.ndarray, shift: float, *, span: float, reach: float
) -> float:
    """The clip's start within ``span`` of ``shift``, from the shifts that line windows up.

    Each shift that puts some query window on a stored window scores the mean similarity of the
    windows it lines up; the best one within ``span`` and its nearest neighbours either side, each
    no farther than ``reach`` (else the best shift stands), fit a V.
    """
    shifts = np.unique(np.round((track_starts[:, None] - query_starts[None, :]).ravel(), 2))
    shifts = shifts[np.abs(shifts - shift) <= span + reach + 1e-9]
    lined_up = np.abs(track_starts[None, :, None] - (query_starts[None, None, :] + shifts[:, None, None])) <= LINED_UP
    values = np.where(lined_up, pairs[None], -np.inf).max(axis=1)  # (shifts, query windows)
    counted = np.isfinite(values)
    scores = np.where(counted, values, 0.0).sum(axis=1) / np.maximum(counted.sum(axis=1), 1)
    scores[~counted.any(axis=1)] = -np.inf
    inside = np.abs(shifts - shift) <= span + 1e-9
    best = int(np.argmax(np.where(inside, scores, -np.inf)))
    if not np.isfinite(scores[best]) or best == 0 or best == len(shifts) - 1:
        return float(shifts[best])
    before, after = best - 1, best + 1
    if shifts[best] - shifts[before] > reach + 1e-9 or shifts[after] - shifts[best] > reach + 1e-9:
        return float(shifts[best])
    if not (np.isfinite(scores[before]) and np.isfinite(scores[after])):
        return float(shifts[best])
    return apex(shifts[before : after + 1], scores[before : after + 1])


def apex(x: np.ndarray, y: np.ndarray) -> float:
    """Where a V with equal slopes either side peaks, through three points whose middle one is the
    highest: the steeper of the two slopes to the middle is the V's, and the apex lies toward the
    other side, at most halfway to that neighbour."""
    (left, middle, right), (low_left, top, low_right) = x, y
    rising, falling = (top - low_left) / (middle - left), (top - low_right) / (right - middle)
    if max(rising, falling) <= 0:
        return float(middle)
    if rising >= falling:
        return float(np.clip((middle + right) / 2 - (top - low_right) / (2 * rising), middle, (middle + right) / 2))
    return float(np.clip((left + middle) / 2 + (top - low_left) / (2 * falling), (left + middle) / 2, middle))
