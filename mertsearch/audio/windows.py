"""Cut a track into the fixed-length windows the model sees, as its samples arrive.

The rule, which queries and catalog tracks share:

- windows are ``window_s`` long and start every ``hop_s`` seconds from 0;
- the tail after the last full window gets one more window ending exactly at the end of the
  track (overlapping its neighbour) when it is at least ``min_tail_s`` long; a shorter tail is
  dropped, so no window is ever padded;
- a track shorter than one window (but at least ``min_duration_s``) is one window of its own
  length, embedded alone, so padding never changes a result.

A catalog with text search also takes CLaMP 3's last window (``text_tail``): the tail after the
last full window as it is, from the window start where it begins, shorter than the others (its
recipe, see mertsearch.encoder.text_features); it serves the text vector only.

A query may also take a probe window (:class:`ProbeCutter`): one more window off the catalog's
grid (half a hop in, for most clips), which only serves to place the clip between window starts.
"""

from __future__ import annotations

import numpy as np

from mertsearch.config import WindowSettings
from mertsearch.errors import AudioDecodeError

# (start sample, samples) of one window.
Window = tuple[int, np.ndarray]


class WindowCutter:
    """Feed it a track's samples chunk by chunk; it returns each window as soon as it is known.

    Only the samples a later window can still need are kept (at most one window's worth).
    """

    def __init__(self, sample_rate: int, settings: WindowSettings, *, text_tail: bool = False) -> None:
        self.sample_rate = sample_rate
        self.settings = settings
        self.text_tail = text_tail
        self.length = int(round(settings.window_s * sample_rate))
        self._hop = int(round(settings.hop_s * sample_rate))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0
        self._next_start = 0
        self.total = 0  # samples fed so far

    def feed(self, samples: np.ndarray) -> list[Window]:
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self.total += len(samples)
        windows = []
        while self._next_start + self.length <= self.total:
            windows.append((self._next_start, self._take(self._next_start, self.length)))
            self._next_start += self._hop
        keep_from = max(0, min(self._next_start, self.total - self.length))
        self._buffer = self._buffer[keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return windows

    def finish(self) -> list[Window]:
        """The last window, if the rule gives one; raises AudioDecodeError for a too-short track."""
        duration = self.total / self.sample_rate
        if duration < self.settings.min_duration_s:
            raise AudioDecodeError(f"too short: {duration:.2f} s, the minimum is {self.settings.min_duration_s:g} s")
        if self.total < self.length:
            return [(0, self._take(0, self.total))]
        tail = self.total - (self._next_start - self._hop + self.length)
        if self.total > self.length and tail >= self.settings.min_tail_s * self.sample_rate:
            last = [(self.total - self.length, self._take(self.total - self.length, self.length))]
            if self.text_tail:
                last.append((self._next_start, self._take(self._next_start, self.total - self._next_start)))
            return last
        return []

    def _take(self, start: int, length: int) -> np.ndarray:
        offset = start - self._buffer_start
        return self._buffer[offset : offset + length].copy()


class ProbeCutter:
    """Keeps a clip's first hop and window of samples as it streams by, to cut its probe window.

    The probe is one more window, placed where it lies farthest, modulo the hop, from every window
    start of the clip (half a hop in, for a clip whose windows all start on the grid), so that
    wherever the clip starts in a track, some window of it lands close to a stored window.
    search.placement uses it to place the clip between window starts.
    """

    def __init__(self, sample_rate: int, settings: WindowSettings, *, frame: int = 1) -> None:
        self.length = int(round(settings.window_s * sample_rate))
        self.hop = int(round(settings.hop_s * sample_rate))
        self.frame = frame
        self._kept: list[np.ndarray] = []
        self._seen = 0

    def feed(self, samples: np.ndarray) -> None:
        wanted = samples[: max(self.hop + self.length - self._seen, 0)]
        if len(wanted):
            self._kept.append(wanted.astype(np.float32, copy=True))
        self._seen += len(samples)

    def finish(self, starts: list[int]) -> list[Window]:
        """The probe among the clip's windows starting at ``starts`` (samples, the tail's too), or
        none when the clip is too short for one to lie at least a quarter hop from all of them."""
        start = probe_start(starts, self._seen, self.length, self.hop, frame=self.frame)
        if start is None:
            return []
        return [(start, np.concatenate(self._kept)[start : start + self.length])]


def probe_start(starts: list[int], total: int, length: int, hop: int, *, frame: int = 1) -> int | None:
    """Where in a clip of ``total`` samples a window of ``length`` lies farthest, modulo ``hop``, from
    the window starts ``starts``: the first such start within the first hop, if at least a quarter
    hop from every one. None where the windows are at most half a window apart: the clip's own
    windows then line up that closely with stored ones already.

    The start is a whole number of the model's ``frame`` (input samples per frame) from the clip's
    start, so the probe's frames fall where its first window's do: a model whose frames fall
    half a frame elsewhere can see the same stretch quite differently.
    """
    room = min(hop, total - length)
    if room < 0 or not starts or 2 * hop <= length:
        return None
    phases = np.asarray(starts) % hop
    candidates = np.unique(np.linspace(0, room, 101) // frame * frame).astype(np.int64)
    apart = np.abs(candidates[:, None] - phases[None, :])
    distance = np.minimum(apart, hop - apart).min(axis=1)
    best = int(np.argmax(distance))
    return int(candidates[best]) if distance[best] >= hop / 4 else None


def cut_windows(samples: np.ndarray, sample_rate: int, settings: WindowSettings) -> list[Window]:
    """All windows of a whole track held in memory."""
    cutter = WindowCutter(sample_rate, settings)
    return cutter.feed(samples) + cutter.finish()
