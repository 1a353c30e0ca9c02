"""Feed the model windows from several files at once, as the decoder workers deliver them.

Windows wait in one queue per length (short tracks have windows of their own length) and go
to the model ``batch_size`` at a time, whichever files they come from. The model runs whenever
a batch is full, or whenever no worker has anything ready, so it is never idle while there is
work. A file's outcome is given as soon as its last window is embedded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mertsearch.encoder.embed import assemble
from mertsearch.indexer.pipeline import Embedded, Failed, Outcome, Unchanged
from mertsearch.indexer.reader import FINAL, WINDOWS_PER_MESSAGE
from mertsearch.indexer.workers import Workers

if TYPE_CHECKING:
    from mertsearch.encoder.mert import MertEncoder


@dataclass
class _Track:
    job: Any
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    means: list[np.ndarray] = field(default_factory=list)
    queued: int = 0  # windows waiting for the model
    done: tuple | None = None  # the reader's ("done", ...) message
    claimed: bool = False  # its outcome is given (a moved file's track): the rest of its messages are dropped


# Given a new file's job and its ("identity", sha256, audio_sha256) message: the file's outcome
# when no embedding is needed (it holds a moved track's audio), else None.
Claim = Callable[[Any, tuple], "Outcome | None"]


def embed_jobs(
    jobs: Iterable[Any], *, encoder: MertEncoder, workers: Workers, claim: Claim | None = None
) -> Iterator[tuple[Any, Outcome]]:
    """(job, outcome) for each job (which has ``path`` and ``known``), in the order they finish."""
    jobs = iter(jobs)
    tracks: dict[int, _Track] = {}
    on_slot: dict[int, int] = {}
    queues: dict[int, deque] = {}  # window length -> (track id, start, samples)
    next_id = 0
    exhausted = False
    # Windows held at most before the workers are made to wait (they block on their pipes).
    limit = 2 * max(encoder.batch_size, WINDOWS_PER_MESSAGE * workers.slots)

    def run_model(full_only: bool) -> list[int]:
        """Embed one batch from the longest queue; the ids of the tracks whose windows it held."""
        length, queue = max(queues.items(), key=lambda item: len(item[1]))
        if full_only and len(queue) < encoder.batch_size:
            return []
        batch = [queue.popleft() for _ in range(min(encoder.batch_size, len(queue)))]
        if not queue:
            del queues[length]
        means = encoder.embed_windows(np.stack([samples for _, _, samples in batch]))
        for (track_id, start, samples), mean in zip(batch, means, strict=True):
            track = tracks[track_id]
            track.starts.append(start)
            track.lengths.append(len(samples))
            track.means.append(mean)
            track.queued -= 1
        return sorted({track_id for track_id, _, _ in batch})

    def finished(track_id: int) -> tuple[Any, Outcome] | None:
        track = tracks[track_id]
        if track.done is None or track.queued:
            return None
        del tracks[track_id]
        _, digest, audio, total, tags = track.done
        embedding = assemble(encoder, np.array(track.starts), np.array(track.lengths), np.stack(track.means), total)
        return track.job, Embedded(embedding, tags, digest, audio)

    def drop(track_id: int) -> None:
        for length in list(queues):
            queues[length] = deque(item for item in queues[length] if item[0] != track_id)
            if not queues[length]:
                del queues[length]
        del tracks[track_id]

    while True:
        while not exhausted and (idle := workers.idle()):
            job = next(jobs, None)
            if job is None:
                exhausted = True
                break
            tracks[next_id] = _Track(job)
            on_slot[idle[0]] = next_id
            workers.start(idle[0], job.path, job.known)
            next_id += 1
        if not tracks:
            return
        if queues:
            full = sum(map(len, queues.values())) >= limit
            for track_id in run_model(full_only=not full):
                if (result := finished(track_id)) is not None:
                    yield result
            if full:
                continue
        # Wait for the workers only when the model has nothing to do.
        messages = workers.poll(timeout=0.0 if queues else 1.0) + workers.stalled()
        if not messages and queues:
            for track_id in run_model(full_only=False):
                if (result := finished(track_id)) is not None:
                    yield result
            continue
        for slot, message in messages:
            track_id = on_slot[slot]
            track = tracks[track_id]
            kind = message[0]
            if track.claimed:
                if kind in FINAL:
                    del tracks[track_id]
            elif kind == "identity":
                if claim is not None and (outcome := claim(track.job, message)) is not None:
                    track.claimed = True
                    yield track.job, outcome
            elif kind == "windows":
                _, starts, samples = message
                queue = queues.setdefault(samples.shape[1], deque())
                queue.extend((track_id, start, window) for start, window in zip(starts, samples, strict=True))
                track.queued += len(starts)
            elif kind == "done":
                track.done = message
                if (result := finished(track_id)) is not None:
                    yield result
            elif kind == "same":
                del tracks[track_id]
                yield track.job, Unchanged(*message[1:])
            else:
                drop(track_id)
                yield track.job, Failed(message[1])
