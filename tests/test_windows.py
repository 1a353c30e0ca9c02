import numpy as np
import pytest

from mertsearch.audio.windows import ProbeCutter, WindowCutter, cut_windows, probe_start
from mertsearch.config import WindowSettings
from mertsearch.errors import AudioDecodeError, InvalidArgumentError

SR = 100  # samples per second, to keep the arithmetic readable


def starts(seconds: float, **kw) -> list[float]:
    settings = WindowSettings(**{"window_s": 5.0, "hop_s": 5.0, **kw})
    return [start / SR for start, _ in cut_windows(np.arange(int(seconds * SR), dtype=np.float32), SR, settings)]


def test_full_windows_from_zero_every_hop():
    assert starts(15) == [0, 5, 10]
    assert starts(15, hop_s=2.5) == [0, 2.5, 5, 7.5, 10]


def test_long_tail_gets_a_window_ending_at_the_end():
    assert starts(17) == [0, 5, 10, 12]


def test_short_tail_is_dropped():
    assert starts(15.5) == [0, 5, 10]


def test_every_window_has_the_same_length_and_holds_its_samples():
    samples = np.arange(1733, dtype=np.float32)
    windows = cut_windows(samples, SR, WindowSettings(window_s=5, hop_s=2))
    assert [start for start, _ in windows] == [0, 200, 400, 600, 800, 1000, 1200]  # 33-sample tail dropped
    for start, window in windows:
        np.testing.assert_array_equal(window, samples[start : start + 500])


def test_track_shorter_than_a_window_is_one_window_of_its_own_length():
    (start, window), *rest = cut_windows(np.ones(320, np.float32), SR, WindowSettings())
    assert start == 0 and len(window) == 320 and not rest


def test_too_short_is_an_error():
    with pytest.raises(AudioDecodeError, match="too short"):
        cut_windows(np.ones(50, np.float32), SR, WindowSettings(min_duration_s=1.0))


@pytest.mark.parametrize("hop_s", [5.0, 2.5, 1.7])
def test_chunks_of_any_size_give_the_same_windows_holding_little(hop_s):
    settings = WindowSettings(window_s=5.0, hop_s=hop_s)
    rng = np.random.default_rng(1)
    for total in [120, 499, 500, 501, 612, 1000, 1099, 1100, 4321]:
        samples = rng.standard_normal(total).astype(np.float32)
        whole = cut_windows(samples, SR, settings)
        cutter, streamed, position = WindowCutter(SR, settings), [], 0
        while position < total:
            size = int(rng.integers(1, 400))
            streamed += cutter.feed(samples[position : position + size])
            position += size
            assert len(cutter._buffer) <= cutter.length + 400  # never the whole track
        streamed += cutter.finish()
        assert [s for s, _ in streamed] == [s for s, _ in whole]
        for (_, a), (_, b) in zip(streamed, whole, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("seconds", "hop_s", "probe"),
    [
        (10, 5.0, 2.5),  # windows at 0 and 5: half a hop in
        (12, 5.0, 3.5),  # 0, 5 and the tail at 7: midway between 2 and 5
        (8, 5.0, 1.5),  # 0 and the tail at 3
        (9, 5.0, 2.0),  # 0 and the tail at 4
        (7.5, 5.0, 1.25),  # 0 and the tail at 2.5: a quarter hop from each
        (7, 5.0, None),  # 0 and the tail at 2: nothing lies a quarter hop from both
        (6, 5.0, None),
        (4, 5.0, None),  # shorter than a window
        (10, 2.5, None),  # windows half a window apart: the clip's own windows are enough
        (11, 3.0, 1.5),
    ],
)
def test_the_probe_lies_farthest_from_the_clip_s_window_starts_modulo_the_hop(seconds, hop_s, probe):
    settings = WindowSettings(window_s=5.0, hop_s=hop_s)
    samples = np.random.default_rng(2).standard_normal(int(seconds * SR)).astype(np.float32)
    starts = [start for start, _ in cut_windows(samples, SR, settings)]
    prober = ProbeCutter(SR, settings)
    for position in range(0, len(samples), 37):  # streamed in small chunks, as a clip is decoded
        prober.feed(samples[position : position + 37])
    found = prober.finish(starts)
    if probe is None:
        assert found == []
        return
    [(start, window)] = found
    assert start / SR == pytest.approx(probe)
    np.testing.assert_array_equal(window, samples[start : start + 500])


@pytest.mark.parametrize("kw", [{"hop_s": 0}, {"hop_s": 6}, {"window_s": -1}, {"min_duration_s": 0.01}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(InvalidArgumentError):
        WindowSettings(**kw)


def test_the_probe_starts_a_whole_number_of_model_frames_in():
    # MERT's frames are 320 samples apart at 24 kHz: half a hop (60,000 samples) is 187.5 of them.
    assert probe_start([0, 120_000], 240_000, 120_000, 120_000, frame=320) == 187 * 320
