"""Where in a track a clip matches, on synthetic window vectors whose similarity falls off with time."""

import numpy as np
import pytest

from mertsearch.search.engine import Query
from mertsearch.search.placement import _landed, _mean, align, apex

HOP = 5.0


def _vectors_at(starts: np.ndarray) -> np.ndarray:
    """Unit vectors of random Fourier features of a window's start: the cosine of two of them is
    close to exp(-0.02 * (t1 - t2)**2), about 0.6 one hop apart, so scores peak smoothly at the true
    offset."""
    rng = np.random.default_rng(0)
    omega, phase = rng.normal(0, 0.2, 4096), rng.uniform(0, 2 * np.pi, 4096)
    vectors = np.cos(np.outer(starts, omega) + phase)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _pooled_at(starts: np.ndarray, length: float = HOP) -> np.ndarray:
    """Unit vectors of windows as a model pools them: the mean over the window of frame vectors,
    here independent random ones every 0.05 s, so two windows' cosine is the share of audio they
    have in common: 1 minus their distance over the window length, down to 0."""
    frames = np.random.default_rng(1).normal(size=(3000, 2048))  # 150 s of frames
    per_window = int(round(length / 0.05))
    vectors = np.stack([frames[int(round(s / 0.05)) :][:per_window].mean(axis=0) for s in starts])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _aligned(cut: float, vectors_at=_vectors_at, seconds: float = 15, probe: float | None = None):
    """``align`` of a clip of ``seconds`` cut from a 60 s track at ``cut`` seconds, with a probe
    window starting ``probe`` seconds into the clip, and the query."""
    track_starts = np.arange(0, 60, HOP)
    query_starts = np.arange(0, seconds - HOP + 1e-9, HOP)
    windows = vectors_at(cut + query_starts)
    probes = None if probe is None else (vectors_at(np.array([cut + probe])), np.array([[probe, probe + HOP]]))
    query = Query(
        windows.mean(axis=0), windows, np.stack([query_starts, query_starts + HOP], axis=1), *(probes or (None, None))
    )
    track_times = np.stack([track_starts, track_starts + HOP], axis=1)
    return align(track_times, vectors_at(track_starts), query, HOP / 2), query


def _clip_start(cut: float, vectors_at=_vectors_at, seconds: float = 15, probe: float | None = None) -> float:
    """Where ``align`` says that clip starts; its matching range holds its best window there."""
    found, query = _aligned(cut, vectors_at, seconds, probe)
    start, end = found.match
    assert end - start == pytest.approx(HOP)
    assert start == pytest.approx(found.offset + query.placing()[1][found.query_window, 0])
    return found.offset


@pytest.mark.parametrize("cut", [7.7, 13.1, 21.3, 32.4])
def test_a_clip_cut_between_window_starts_is_placed_between_them(cut):
    # The best grid shift alone is 1.3-2.4 s off for these cuts; the fit between neighbours brings
    # every one within half a second.
    assert _clip_start(cut) == pytest.approx(cut, abs=0.5)


@pytest.mark.parametrize("cut", [20.0, 30.0])
def test_a_clip_cut_on_a_window_start_stays_there(cut):
    assert _clip_start(cut) == pytest.approx(cut, abs=0.1)


@pytest.mark.parametrize("cut", [7.7, 13.1, 16.45, 21.3, 24.05, 32.4])
def test_with_a_probe_half_a_hop_in_pooled_windows_are_placed_within_a_tenth_of_a_second(cut):
    # Pooled windows' similarity falls off linearly with their distance, which the fit assumes: the
    # windows of a 10 s clip and its probe between them place it almost exactly; without the probe
    # the fit has only shifts a hop apart.
    assert _clip_start(cut, _pooled_at, seconds=10, probe=HOP / 2) == pytest.approx(cut, abs=0.1)
    assert _clip_start(cut, _pooled_at, seconds=10) == pytest.approx(cut, abs=0.6)


@pytest.mark.parametrize("cut", [10.0, 13.1])
def test_the_probe_takes_no_part_in_the_score(cut):
    # The score is the best alignment of the clip's own windows: 1 for a copy of stored windows.
    with_probe, _ = _aligned(cut, _pooled_at, seconds=10, probe=HOP / 2)
    without, _ = _aligned(cut, _pooled_at, seconds=10)
    assert with_probe.score == pytest.approx(without.score, abs=1e-12)
    if cut == 10.0:
        assert with_probe.score == pytest.approx(1.0, abs=1e-6)


def test_in_a_sampled_track_only_the_query_windows_that_land_on_a_window_count():
    """A 15 s clip starting on the second of three sampled windows (10, 30, 50 s of a 60 s track):
    its later windows land between samples, where the track was never embedded."""
    track_starts = np.array([10.0, 30.0, 50.0])
    query_starts = np.arange(0, 15, HOP)
    windows = _vectors_at(30 + query_starts)
    query = Query(windows.mean(axis=0), windows, np.stack([query_starts, query_starts + HOP], axis=1))
    track_times = np.stack([track_starts, track_starts + HOP], axis=1)
    whole = align(track_times, _vectors_at(track_starts), query, HOP / 2)
    sampled = align(track_times, _vectors_at(track_starts), query, HOP / 2, sampled=True)
    assert whole.score == pytest.approx(1 / 3, abs=0.01) and sampled.score == pytest.approx(1.0, abs=1e-6)
    assert sampled.match[0] == pytest.approx(30.0) and sampled.offset == pytest.approx(30.0)


@pytest.mark.parametrize("sampled", [False, True])
def test_shift_scores_are_those_of_every_shift_tried_one_by_one(sampled):
    """Against the plain definition: for each shift, each query window takes the best track window
    starting within the tolerance of where it lands (none: 0, or left out when sampled)."""
    rng = np.random.default_rng(2)
    track_starts = np.concatenate([np.arange(0, 40, HOP), [37.3]])  # the tail window ends the track
    query_starts = np.array([0.0, 5.0, 2.5, 3.0])
    pairs = rng.uniform(-1, 1, (len(track_starts), len(query_starts)))
    shifts = np.unique(np.round((track_starts[:, None] - query_starts[None, :]).ravel(), 2))
    expected = []
    for shift in shifts:
        per_window = []
        for j, start in enumerate(query_starts):
            near = np.abs(track_starts - (start + shift)) <= HOP / 2
            per_window.append(pairs[near, j].max() if near.any() else None)
        landed = [value for value in per_window if value is not None]
        expected.append(np.mean(landed) if sampled else sum(landed) / len(per_window))
    found = _mean(_landed(track_starts, pairs, query_starts, shifts, HOP / 2), sampled)
    np.testing.assert_allclose(found, expected)


@pytest.mark.parametrize(
    ("x", "peak"), [((0.0, 2.5, 5.0), 3.2), ((2.5, 5.0, 7.5), 4.9), ((2.5, 5.0, 7.5), 5.0), ((5.0, 7.5, 10.0), 6.6)]
)
def test_apex_is_exact_for_a_v_with_equal_slopes(x, peak):
    for points in (np.array(x), np.array(x) - [0.5, 0, 0]):  # the neighbours at equal and unequal distances
        assert apex(points, 1.0 - 0.1 * np.abs(points - peak)) == pytest.approx(peak)


def test_a_clip_is_placed_on_its_own_stretch_not_on_a_grid_aligned_look_alike():
    """The track turns steadily (30 degrees per half hop) from 0 to 40 s, then holds near-copies of
    the clip's own windows on the grid at 50 and 55 s, a passage that merely resembles it. The clip
    starts at 12.3 s, off the grid: its windows meet stored ones only half a hop off there, so on
    the grid the look-alike scores higher; blended between the stored windows, its own stretch
    scores 1 and wins."""
    rng = np.random.default_rng(3)
    turn = np.radians(30) / (HOP / 2)
    axes = np.linalg.qr(rng.normal(size=(64, 64)))[0][:, :2]

    def at(t: np.ndarray) -> np.ndarray:
        return np.cos(turn * t)[:, None] * axes[:, 0] + np.sin(turn * t)[:, None] * axes[:, 1]

    query_starts, probe_start = np.array([0.0, HOP]), np.array([HOP / 2])
    clip, probe = at(12.3 + query_starts), at(12.3 + probe_start)
    look_alike = clip + rng.normal(0, 0.02, clip.shape)
    look_alike /= np.linalg.norm(look_alike, axis=1, keepdims=True)
    smooth_starts = np.arange(0.0, 40.0 + 1e-9, HOP)
    starts = np.concatenate([smooth_starts, [50.0, 55.0]])
    vectors = np.concatenate([at(smooth_starts), look_alike])
    query = Query(
        clip.mean(axis=0),
        clip,
        np.stack([query_starts, query_starts + HOP], axis=1),
        probe_vectors=probe,
        probe_times=np.stack([probe_start, probe_start + HOP], axis=1),
    )
    pairs = vectors @ np.concatenate([clip, probe]).T
    grid = _mean(_landed(starts, pairs, np.r_[query_starts, probe_start], np.array([12.5, 50.0]), HOP / 2), False)
    assert grid[1] > grid[0]  # on the grid, the look-alike wins
    found = align(np.stack([starts, starts + HOP], axis=1), vectors, query, HOP / 2)
    assert found.offset == pytest.approx(12.3, abs=0.3)
