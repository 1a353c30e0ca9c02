"""The ingest loop: for each file decide added / updated / retagged / moved / unchanged / failed,
embed, store.

Files that need the model go to ``embed`` (decoder workers feeding the model, see
mertsearch.indexer.batching), which hands back each file's outcome as it finishes. Every track
is committed on its own, so an interrupted run loses at most the files in flight, and a rerun
carries on from there: files already stored are recognised by size and mtime, or by their
audio's hash (mertsearch.audio.identity) when those changed. A file whose audio is the one
stored (new tags, new cover art) gets its new tags and keeps its vectors; a new file whose audio
is that of a track whose file is gone (moved, renamed) takes that track over, id and vectors
(see ``mover``: the decoder worker tells the file's audio hash before anything is embedded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from mertsearch.audio.tags import read_tags
from mertsearch.errors import MertSearchError
from mertsearch.indexer.discover import surely_gone
from mertsearch.storage.schema import Track
from mertsearch.storage.store import MetadataStore, StoredTrack, TrackRecord

if TYPE_CHECKING:
    from mertsearch.encoder.pooling import Embedding


@dataclass(frozen=True)
class Embedded:
    embedding: Embedding
    tags: dict
    sha256: str
    audio_sha256: str | None = None


@dataclass(frozen=True)
class Unchanged:
    """The audio is the one stored; ``tags`` as read now (None: the file is the same bytes)."""

    sha256: str
    audio_sha256: str | None = None
    tags: dict | None = None


@dataclass(frozen=True)
class Moved:
    """A new file holds the audio of a track whose file is gone: it takes that track over."""

    track_id: int
    sha256: str


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Embedded | Unchanged | Moved | Failed


def fail_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    if isinstance(exc, MertSearchError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


# Embeds the files of the jobs it is given: (job, outcome) for each, in the order they finish.
Embed = Callable[["Iterator[Job]"], "Iterator[tuple[Job, Outcome]]"]
# Told about every stored track: what the store changed, and what was stored.
OnStored = Callable[[StoredTrack, TrackRecord], None]
# Names the leading track of the recording a new file also holds (or None); gets the record and
# the id of the file's own older version, which is never its duplicate.
LeaderOf = Callable[[TrackRecord, "int | None"], "int | None"]
# Told about a track removed from the catalog: its id and its windows' ids.
OnRemoved = Callable[[int, list[int]], None]
# Told about a track whose tags or path changed, its vectors not.
OnRetagged = Callable[[int], None]


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class IndexProgress:
    """Where a run stands, after each file."""

    done: int
    total: int
    audio_seconds: float
    elapsed: float
    path: str
    status: str  # added | updated | retagged | moved | unchanged | failed | skipped


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0  # the audio changed: embedded again
    retagged: int = 0  # only the tags (or cover art) changed: new tags, the same vectors
    moved: int = 0  # a gone track's audio found in a new file (moved, renamed): the same id and vectors
    unchanged: int = 0
    skipped_failed: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    removed: int = 0  # tracks whose files are gone from the indexed folders
    # Indexed folders with tracks but no audio file at all (an unmounted disk?): their tracks were kept.
    empty_folders: list[str] = field(default_factory=list)
    files: int = 0
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    saving_s: float = 0.0  # spent saving the indexes, the final save included
    # How the model ran: "cpu"/"cuda", the arithmetic chosen, decoder processes (0: inline).
    device: str = ""
    precision: str = ""
    decoders: int = 0
    executor: str = "local"  # or "ray"
    from_shards: int = 0  # tracks a distributed run took from an earlier run's shard files

    def as_dict(self) -> dict:
        out = asdict(self)
        out["audio_hours"] = self.audio_seconds / 3600
        return out


@dataclass(frozen=True)
class Job:
    """A file that needs the model (or at least its hash checked), as seen when the run began."""

    path: str
    size: int
    mtime_ns: int
    existing: Track | None  # the stored row for this path, if any
    redo: bool = False  # embed it again though it is unchanged (it lacks its text vector)

    @property
    def known(self) -> tuple[str, str | None] | None:
        """The stored (sha256, audio_sha256) for this path, if any and not to be embedded again."""
        if self.existing is None or self.redo:
            return None
        return self.existing.sha256, self.existing.audio_sha256


def run_index(
    files: list[Path],
    *,
    store: MetadataStore,
    embed: Embed,
    on_stored: OnStored,
    on_removed: OnRemoved,
    leader_of: LeaderOf | None = None,
    retry_failed: bool = False,
    progress: Callable[[IndexProgress], None] | None = None,
    on_retagged: OnRetagged = lambda _track_id: None,
    redo: Callable[[Track], bool] | None = None,
) -> IndexReport:
    """``redo``: whether an unchanged file's track must be embedded again all the same."""
    report = IndexReport(files=len(files))
    started = time.monotonic()
    done = 0

    def tell(path: str, status: str) -> None:
        nonlocal done
        done += 1
        report.elapsed = time.monotonic() - started
        if progress is not None:
            progress(IndexProgress(done, len(files), report.audio_seconds, report.elapsed, path, status))

    def jobs() -> Iterator[Job]:
        for path in files:
            job = _triage(path, store, retry_failed, report, redo)
            if isinstance(job, Job):
                yield job
            else:
                tell(os.fsdecode(path), job)

    for job, outcome in embed(jobs()):
        tell(job.path, _finish(job, outcome, store, on_stored, on_removed, on_retagged, leader_of, report))
    return report


def _triage(
    path: Path,
    store: MetadataStore,
    retry_failed: bool,
    report: IndexReport,
    redo: Callable[[Track], bool] | None = None,
) -> Job | str:
    """The job for a file, or its status when it needs no work (unchanged, skipped, failed)."""
    key = os.fsdecode(path)
    try:
        stat = path.stat()
    except OSError as exc:
        report.failed.append(FailedFile(key, fail_reason(exc)))
        return "failed"
    existing = store.track_by_path(key)
    # A catalog older than the audio hash learns it (a job that decodes nothing when the file is the same).
    if (
        existing is not None
        and existing.audio_sha256 is not None
        and (existing.size, existing.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    ):
        if redo is not None and redo(existing):
            return Job(key, stat.st_size, stat.st_mtime_ns, existing, redo=True)
        report.unchanged += 1
        return "unchanged"
    failure = store.failure_by_path(key)
    if (
        not retry_failed
        and existing is None
        and failure is not None
        and (failure.size, failure.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    ):
        report.skipped_failed += 1
        return "skipped"
    if not S_ISREG(stat.st_mode):
        # A pipe or a device would block or never end when read.
        reason = "not a regular file"
        store.record_failure(key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, reason=reason)
        report.failed.append(FailedFile(key, reason))
        return "failed"
    return Job(key, stat.st_size, stat.st_mtime_ns, existing)


def mover(store: MetadataStore) -> Callable[[Job, tuple], Moved | None]:
    """For a new file's ("identity", sha256, audio_sha256) message: the track it takes over when a
    track holds that audio and its file is gone (moved or renamed: its vectors are this file's)."""

    def claim(job: Job, message: tuple) -> Moved | None:
        _, digest, audio = message
        for track_id, path in store.tracks_with_audio(audio):
            if surely_gone(path):
                return Moved(track_id, digest)
        return None

    return claim


def _finish(
    job: Job,
    outcome: Outcome,
    store: MetadataStore,
    on_stored: OnStored,
    on_removed: OnRemoved,
    on_retagged: OnRetagged,
    leader_of: LeaderOf | None,
    report: IndexReport,
) -> str:
    existing = job.existing
    if isinstance(outcome, Moved):
        tags = read_tags(job.path).as_dict()
        fields = {"path": job.path, "size": job.size, "mtime_ns": job.mtime_ns, "sha256": outcome.sha256}
        store.update_file(outcome.track_id, **fields, tags=tags)
        on_retagged(outcome.track_id)
        report.moved += 1
        return "moved"
    if isinstance(outcome, Unchanged):
        retagged = store.update_file(
            existing.id,
            size=job.size,
            mtime_ns=job.mtime_ns,
            sha256=outcome.sha256,
            audio_sha256=outcome.audio_sha256,
            tags=outcome.tags,
        )
        if retagged:
            on_retagged(existing.id)
            report.retagged += 1
            return "retagged"
        report.unchanged += 1
        return "unchanged"
    if isinstance(outcome, Failed):
        if existing is not None:
            # The file changed into something unusable: its old vectors no longer describe it.
            on_removed(existing.id, store.delete_track(existing.id))
        store.record_failure(job.path, size=job.size, mtime_ns=job.mtime_ns, reason=outcome.reason)
        report.failed.append(FailedFile(job.path, outcome.reason))
        return "failed"
    assert isinstance(outcome, Embedded)
    embedding = outcome.embedding
    record = TrackRecord(
        path=job.path,
        size=job.size,
        mtime_ns=job.mtime_ns,
        sha256=outcome.sha256,
        audio_sha256=outcome.audio_sha256,
        duration=embedding.duration,
        tags=outcome.tags,
        vector=embedding.vector,
        window_starts=embedding.window_starts,
        window_ends=embedding.window_ends,
        window_vectors=embedding.window_vectors,
        layer_vectors=embedding.layer_vectors,
        window_layer_vectors=embedding.layer_window_vectors,
        text_vector=embedding.text_vector,
    )
    if leader_of is not None:
        # Found before storing, so the link is written with the track in one transaction.
        record = replace(record, duplicate_of=leader_of(record, existing.id if existing else None))
    stored = store.put_track(record)
    on_stored(stored, record)
    report.audio_seconds += embedding.duration
    if not stored.replaced:
        report.added += 1
        return "added"
    report.updated += 1
    return "updated"
