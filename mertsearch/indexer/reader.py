"""What a decoder worker does with one file: hash it, decode it, cut it into windows, read its tags.

The work is a generator of small messages, so the same code runs inside the indexing process
or in a worker process that sends each message to it as soon as it is ready:

- ``("same", sha256)``: the file's content is the one already stored; nothing was decoded;
- ``("windows", starts, samples)``: some windows, in order (samples shaped (n, length));
- ``("done", sha256, total_samples, tags)``: the file ended; no more windows;
- ``("failed", reason)``: the file cannot be used (its windows sent so far must be dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mertsearch.audio.decode import stream_audio
from mertsearch.audio.tags import read_tags
from mertsearch.audio.windows import Window, WindowCutter
from mertsearch.config import WindowSettings
from mertsearch.files import sha256_file
from mertsearch.indexer.pipeline import fail_reason

# Windows per message: enough to keep a batch of the model fed, few enough to bound memory.
WINDOWS_PER_MESSAGE = 8

FINAL = frozenset({"same", "done", "failed"})


def read_track(path: str, known_sha256: str | None, *, sample_rate: int, windows: WindowSettings) -> Iterator[tuple]:
    """The messages for one file (see the module's docstring)."""
    try:
        digest = sha256_file(Path(path))
        if digest == known_sha256:
            yield ("same", digest)
            return
        cutter = WindowCutter(sample_rate, windows)
        pending: list[Window] = []
        for chunk in stream_audio(path, sample_rate=sample_rate):
            pending += cutter.feed(chunk)
            while len(pending) >= WINDOWS_PER_MESSAGE:
                yield _windows(pending[:WINDOWS_PER_MESSAGE])
                del pending[:WINDOWS_PER_MESSAGE]
        pending += cutter.finish()
        for first in range(0, len(pending), WINDOWS_PER_MESSAGE):
            yield _windows(pending[first : first + WINDOWS_PER_MESSAGE])
        yield ("done", digest, cutter.total, read_tags(Path(path)).as_dict())
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the run; the reason is recorded
        yield ("failed", fail_reason(exc))


def _windows(batch: list[Window]) -> tuple:
    return ("windows", [start for start, _ in batch], np.stack([samples for _, samples in batch]))
