"""The ingest loop: for each file decide added / updated / unchanged / failed, embed, store.

Every track is committed on its own, so an interrupted run loses at most the file it was on,
and a rerun carries on from there: files already stored are recognised by size and mtime, or
by content hash when those changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mertsearch.errors import MertSearchError
from mertsearch.files import sha256_file
from mertsearch.storage.store import MetadataStore, StoredTrack, TrackRecord

if TYPE_CHECKING:
    from mertsearch.audio.tags import TrackTags
    from mertsearch.encoder.embed import Embedding

# Turns a file into vectors and tags; raises MertSearchError (or OSError) for a bad file.
EmbedFile = Callable[[Path], "tuple[Embedding, TrackTags]"]
# Told about every stored track: what the store changed, and what was stored.
OnStored = Callable[[StoredTrack, TrackRecord], None]
# Names the leading track of the recording a new file also holds (or None); gets the record and
# the id of the file's own older version, which is never its duplicate.
LeaderOf = Callable[[TrackRecord, "int | None"], "int | None"]
# Told about a track removed from the catalog: its id and its windows' ids.
OnRemoved = Callable[[int, list[int]], None]


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
    status: str  # added | updated | unchanged | failed | skipped


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_failed: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    removed: int = 0  # tracks whose files are gone from the indexed folders
    files: int = 0
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["audio_hours"] = self.audio_seconds / 3600
        return out


def _fail_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    return str(exc)


def run_index(
    files: list[Path],
    *,
    store: MetadataStore,
    embed_file: EmbedFile,
    on_stored: OnStored,
    on_removed: OnRemoved,
    leader_of: LeaderOf | None = None,
    retry_failed: bool = False,
    progress: Callable[[IndexProgress], None] | None = None,
) -> IndexReport:
    report = IndexReport(files=len(files))
    started = time.monotonic()
    for done, path in enumerate(files, start=1):
        status = _index_one(path, store, embed_file, on_stored, on_removed, leader_of, retry_failed, report)
        report.elapsed = time.monotonic() - started
        if progress is not None:
            progress(IndexProgress(done, len(files), report.audio_seconds, report.elapsed, str(path), status))
    return report


def _index_one(
    path: Path,
    store: MetadataStore,
    embed_file: EmbedFile,
    on_stored: OnStored,
    on_removed: OnRemoved,
    leader_of: LeaderOf | None,
    retry_failed: bool,
    report: IndexReport,
) -> str:
    key = os.fsdecode(path)
    try:
        stat = path.stat()
    except OSError as exc:
        report.failed.append(FailedFile(key, _fail_reason(exc)))
        return "failed"
    existing = store.track_by_path(key)
    if existing is not None and (existing.size, existing.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
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
    try:
        digest = sha256_file(path)
        if existing is not None and existing.sha256 == digest:
            store.touch_track(existing.id, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            report.unchanged += 1
            return "unchanged"
        embedding, tags = embed_file(path)
    except (MertSearchError, OSError) as exc:
        reason = _fail_reason(exc)
        if existing is not None:
            # The file changed into something unusable: its old vectors no longer describe it.
            on_removed(existing.id, store.delete_track(existing.id))
        store.record_failure(key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, reason=reason)
        report.failed.append(FailedFile(key, reason))
        return "failed"
    record = TrackRecord(
        path=key,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=digest,
        duration=embedding.duration,
        tags=tags.as_dict(),
        vector=embedding.vector,
        window_starts=embedding.window_starts,
        window_ends=embedding.window_ends,
        window_vectors=embedding.window_vectors,
        layer_vectors=embedding.layer_vectors,
        window_layer_vectors=embedding.layer_window_vectors,
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
