import numpy as np
import pytest

from mertsearch.audio.windows import plan_windows
from mertsearch.config import WindowSettings
from mertsearch.errors import AudioDecodeError, InvalidArgumentError

SR = 100  # samples per second, to keep the arithmetic readable


def starts(seconds: float, **kw) -> list[float]:
    settings = {"window_s": 5.0, "hop_s": 5.0, **kw}
    return list(plan_windows(int(seconds * SR), SR, **settings).start_seconds())


def test_full_windows_from_zero_every_hop():
    assert starts(15) == [0, 5, 10]
    assert starts(15, hop_s=2.5) == [0, 2.5, 5, 7.5, 10]


def test_long_tail_gets_a_window_ending_at_the_end():
    assert starts(17) == [0, 5, 10, 12]


def test_short_tail_is_dropped():
    assert starts(15.5) == [0, 5, 10]


def test_every_window_has_the_same_length():
    plan = plan_windows(1733, SR, window_s=5, hop_s=2)
    assert plan.length == 500
    assert (plan.starts + plan.length <= 1733).all()
    assert plan.stack(np.arange(1733.0)).shape == (len(plan), 500)


def test_track_shorter_than_a_window_is_one_window_of_its_own_length():
    plan = plan_windows(320, SR, window_s=5, hop_s=5)
    assert list(plan.starts) == [0] and plan.length == 320


def test_too_short_is_an_error():
    with pytest.raises(AudioDecodeError, match="too short"):
        plan_windows(50, SR, window_s=5, hop_s=5, min_duration_s=1.0)


@pytest.mark.parametrize("kw", [{"hop_s": 0}, {"hop_s": 6}, {"window_s": -1}, {"min_duration_s": 0.01}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(InvalidArgumentError):
        WindowSettings(**kw)
