"""Where in a track a clip matches, on synthetic window vectors whose similarity falls off with time."""

import numpy as np
import pytest

from mertsearch.search.engine import Query, align

HOP = 5.0


def _vectors_at(starts: np.ndarray) -> np.ndarray:
    """Unit vectors of random Fourier features of a window's start: the cosine of two of them is
    close to exp(-0.02 * (t1 - t2)**2), about 0.6 one hop apart, so scores peak smoothly at the true
    offset and a parabola through three neighbouring shifts finds it between window starts."""
    rng = np.random.default_rng(0)
    omega, phase = rng.normal(0, 0.2, 4096), rng.uniform(0, 2 * np.pi, 4096)
    vectors = np.cos(np.outer(starts, omega) + phase)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _clip_start(cut: float) -> float:
    """Where ``align`` puts a 15 s clip cut from a 60 s track at ``cut`` seconds."""
    track_starts = np.arange(0, 60, HOP)
    query_starts = np.arange(0, 15, HOP)
    windows = _vectors_at(cut + query_starts)
    query = Query(
        vector=windows.mean(axis=0),
        window_vectors=windows,
        window_times=np.stack([query_starts, query_starts + HOP], axis=1),
    )
    track_times = np.stack([track_starts, track_starts + HOP], axis=1)
    _, (start, end), query_window = align(track_times, _vectors_at(track_starts), query, HOP / 2)
    assert end - start == pytest.approx(HOP)
    return start - query_starts[query_window]


@pytest.mark.parametrize("cut", [7.7, 13.1, 21.3, 32.4])
def test_a_clip_cut_between_window_starts_is_placed_between_them(cut):
    # The best grid shift alone is 1.3-2.4 s off for these cuts; the refinement between neighbours
    # brings every one within half a second.
    assert _clip_start(cut) == pytest.approx(cut, abs=0.5)


@pytest.mark.parametrize("cut", [20.0, 30.0])
def test_a_clip_cut_on_a_window_start_stays_there(cut):
    assert _clip_start(cut) == pytest.approx(cut, abs=0.1)


def test_in_a_sampled_track_only_the_query_windows_that_land_on_a_window_count():
    """A 15 s clip starting on the second of three sampled windows (10, 30, 50 s of a 60 s track):
    its later windows land between samples, where the track was never embedded."""
    track_starts = np.array([10.0, 30.0, 50.0])
    query_starts = np.arange(0, 15, HOP)
    windows = _vectors_at(30 + query_starts)
    query = Query(windows.mean(axis=0), windows, np.stack([query_starts, query_starts + HOP], axis=1))
    track_times = np.stack([track_starts, track_starts + HOP], axis=1)
    whole, _, _ = align(track_times, _vectors_at(track_starts), query, HOP / 2)
    sampled, (start, _), _ = align(track_times, _vectors_at(track_starts), query, HOP / 2, sampled=True)
    assert whole == pytest.approx(1 / 3, abs=0.01) and sampled == pytest.approx(1.0, abs=1e-6)
    assert start == pytest.approx(30.0)
