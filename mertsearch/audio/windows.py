"""Cut a track into the fixed-length windows the model sees.

The rule, which queries and catalog tracks share:

- windows are ``window_s`` long and start every ``hop_s`` seconds from 0;
- the tail after the last full window gets one more window ending exactly at the end of the
  track (overlapping its neighbour) when it is at least ``min_tail_s`` long; a shorter tail is
  dropped, so no window is ever padded;
- a track shorter than one window (but at least ``min_duration_s``) is one window of its own
  length, embedded alone, so padding never changes a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mertsearch.errors import AudioDecodeError


@dataclass(frozen=True)
class WindowPlan:
    """Window boundaries in samples; every window has the same ``length``."""

    starts: np.ndarray
    length: int
    sample_rate: int

    def __len__(self) -> int:
        return len(self.starts)

    def start_seconds(self) -> np.ndarray:
        return self.starts / self.sample_rate

    def end_seconds(self) -> np.ndarray:
        return (self.starts + self.length) / self.sample_rate

    def stack(self, audio: np.ndarray, indices: range | None = None) -> np.ndarray:
        """The windows (all of them, or ``indices``) as an array shaped (n, length)."""
        chosen = self.starts if indices is None else self.starts[indices]
        return np.stack([audio[s : s + self.length] for s in chosen])


def plan_windows(
    num_samples: int,
    sample_rate: int,
    *,
    window_s: float,
    hop_s: float,
    min_tail_s: float = 1.0,
    min_duration_s: float = 1.0,
) -> WindowPlan:
    """Where the windows of a track ``num_samples`` long start (see the module's rule)."""
    duration = num_samples / sample_rate
    if duration < min_duration_s:
        raise AudioDecodeError(f"too short: {duration:.2f} s, the minimum is {min_duration_s:g} s")
    window = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if num_samples <= window:
        return WindowPlan(starts=np.array([0], dtype=np.int64), length=num_samples, sample_rate=sample_rate)
    starts = list(range(0, num_samples - window + 1, hop))
    tail = num_samples - (starts[-1] + window)
    if tail >= min_tail_s * sample_rate:
        starts.append(num_samples - window)
    return WindowPlan(starts=np.array(starts, dtype=np.int64), length=window, sample_rate=sample_rate)
