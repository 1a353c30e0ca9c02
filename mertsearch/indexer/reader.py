"""What a decoder worker does with one file: hash it, decode it, cut it into windows, read its tags.

The work is a generator of small messages, so the same code runs inside the indexing process
or in a worker process that sends each message to it as soon as it is ready:

- ``("same", sha256, audio_sha256, tags)``: the file's audio is the one already stored (only its
  tags or cover art may have changed: ``tags`` as read now, or None when the file is byte for
  byte the one stored); nothing was decoded;
- ``("identity", sha256, audio_sha256)``: first, for a file the catalog has no track at this path
  for: its audio's hash, which may be that of a track whose file has moved here (the indexer then
  ignores the rest of this file's messages);
- ``("windows", starts, samples)``: some windows, in order (samples shaped (n, length));
- ``("done", sha256, audio_sha256, total_samples, tags)``: the file ended; no more windows;
- ``("failed", reason)``: the file cannot be used (its windows sent so far must be dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mertsearch.audio.decode import SILENCE_PEAK, audio_duration, decode_audio, stream_audio
from mertsearch.audio.identity import audio_sha256
from mertsearch.audio.tags import read_tags
from mertsearch.audio.windows import Window, WindowCutter
from mertsearch.config import WindowSettings
from mertsearch.errors import MertSearchError
from mertsearch.files import sha256_file
from mertsearch.indexer.pipeline import fail_reason

# Windows per message: enough to keep a batch of the model fed, few enough to bound memory.
WINDOWS_PER_MESSAGE = 8

FINAL = frozenset({"same", "done", "failed"})


# What is known of a file already in the catalog: (sha256, audio_sha256), the latter None in
# catalogs older than the audio identity.
Known = tuple[str, "str | None"]


def read_track(
    path: str,
    known: Known | None,
    *,
    sample_rate: int,
    windows: WindowSettings,
    text_tail: bool = False,
) -> Iterator[tuple]:
    """The messages for one file (see the module's docstring); ``known``: what the catalog holds
    for this path; ``text_tail``: cut the text recipe's last window too (see audio.windows)."""
    try:
        digest = sha256_file(Path(path))
        unchanged = known is not None and digest == known[0]
        if unchanged and known[1] is not None:
            yield ("same", digest, known[1], None)
            return
        try:
            audio = audio_sha256(path)
        except MertSearchError:
            audio = None  # decoding tells what is wrong with the file
        if unchanged:  # the same bytes, in a catalog that did not know its audio's hash yet
            yield ("same", digest, audio, None)
            return
        if audio is not None and known is not None and audio == known[1]:
            yield ("same", digest, audio, read_tags(Path(path)).as_dict())
            return
        if audio is not None and known is None:
            yield ("identity", digest, audio)
        sampled = sampled_windows(path, sample_rate, windows) if windows.sample_s is not None else None
        if sampled is not None:
            chosen, total = sampled
            for first in range(0, len(chosen), WINDOWS_PER_MESSAGE):
                yield _windows(chosen[first : first + WINDOWS_PER_MESSAGE])
            yield ("done", digest, audio, total, read_tags(Path(path)).as_dict())
            return
        cutter = WindowCutter(sample_rate, windows, text_tail=text_tail)
        pending: list[Window] = []
        for chunk in stream_audio(path, sample_rate=sample_rate):
            pending += cutter.feed(chunk)
            while len(pending) >= WINDOWS_PER_MESSAGE:
                yield _windows(pending[:WINDOWS_PER_MESSAGE])
                del pending[:WINDOWS_PER_MESSAGE]
        pending += cutter.finish()
        # A message's windows are of one length: the text recipe's last window is shorter.
        for length in dict.fromkeys(len(samples) for _, samples in pending):
            alike = [window for window in pending if len(window[1]) == length]
            for first in range(0, len(alike), WINDOWS_PER_MESSAGE):
                yield _windows(alike[first : first + WINDOWS_PER_MESSAGE])
        yield ("done", digest, audio, cutter.total, read_tags(Path(path)).as_dict())
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the run; the reason is recorded
        yield ("failed", fail_reason(exc))


def sampled_windows(path: str, sample_rate: int, windows: WindowSettings) -> tuple[list[Window], int] | None:
    """(windows, the track's length in samples) of a sampled catalog: ``windows.sampled_windows``
    windows spread evenly over the track, each decoded by seeking to it. None where the track is
    embedded whole instead: no longer than the sample, of a length the file does not tell, or with
    no sound in any of those windows."""
    duration = audio_duration(path)
    if duration is None or duration <= windows.sample_s:
        return None
    length = round(windows.window_s * sample_rate)
    count = windows.sampled_windows
    chosen, peak = [], 0.0
    for number in range(count):
        begin = (duration - windows.window_s) * (number + 0.5) / count
        # A little past the window: the resampler's edge may lack a sample or two.
        samples = decode_audio(
            path, sample_rate=sample_rate, start=begin, end=begin + windows.window_s + 0.1, silence_is_error=False
        )
        if len(samples) < length:  # the header promised more than the stream holds
            return None
        chosen.append((round(begin * sample_rate), samples[:length]))
        peak = max(peak, float(np.abs(samples).max()))
    if peak < SILENCE_PEAK:
        return None
    return chosen, round(duration * sample_rate)


def _windows(batch: list[Window]) -> tuple:
    return ("windows", [start for start, _ in batch], np.stack([samples for _, samples in batch]))
