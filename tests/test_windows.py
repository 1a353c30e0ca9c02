import numpy as np
import pytest

from mertsearch.audio.windows import WindowCutter, cut_windows
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


@pytest.mark.parametrize("kw", [{"hop_s": 0}, {"hop_s": 6}, {"window_s": -1}, {"min_duration_s": 0.01}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(InvalidArgumentError):
        WindowSettings(**kw)
