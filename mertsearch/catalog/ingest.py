"""Adding files to a catalog, here or on Ray, and forgetting the ones gone from disk."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mertsearch.catalog.calibrate import refresh as refresh_calibration
from mertsearch.catalog.core import Core
from mertsearch.catalog.duplicates import after_ingest, current_rule
from mertsearch.catalog.layout import SHARD_DIR
from mertsearch.config import RaySettings
from mertsearch.encoder.runtime import checkpoint_of
from mertsearch.indexer.discover import discover_files, surely_gone
from mertsearch.indexer.duplicates import Windows, find_leader
from mertsearch.indexer.pipeline import IndexProgress, IndexReport, mover, run_index
from mertsearch.storage.indexes import SaveSchedule
from mertsearch.storage.store import StoredTrack, TrackRecord

# While indexing, the FAISS files are rewritten at most this often (they are rebuilt after a crash
# anyway, and readers catch up from the database meanwhile), and in at most this share of the time.
SAVE_EVERY_S = 60.0
SAVE_SHARE = 0.1
# A decoder worker silent this long (while it is waited for) is taken to hang.
DECODE_TIMEOUT_S = 120.0


def index_paths(
    cat: Core,
    paths: Iterable[str | os.PathLike],
    *,
    retry_failed: bool,
    progress: Callable[[IndexProgress], None] | None,
    decoders: int | None,
    decode_timeout_s: float,
    ray: RaySettings | None,
    prune_empty: bool,
) -> IndexReport:
    """See :meth:`mertsearch.catalog.Catalog.index_paths`; the caller holds the writer lock."""
    from mertsearch.indexer.batching import embed_jobs
    from mertsearch.indexer.reader import read_track
    from mertsearch.indexer.workers import Workers, default_workers

    paths = list(paths)
    files = discover_files(paths)
    indexes = cat.indexes
    indexes.load()
    saves = SaveSchedule(SAVE_EVERY_S, SAVE_SHARE)
    text = cat.text_model if cat.manifest.text is not None else None
    read = functools.partial(
        read_track, sample_rate=cat.manifest.encoder.sample_rate, windows=cat.windows, text_tail=text is not None
    )
    rule = current_rule(cat, writer=True)
    stored_ids: list[int] = []

    def on_stored(stored: StoredTrack, record: TrackRecord) -> None:
        indexes.stored(stored, record.vector, record.window_vectors)
        stored_ids.append(stored.track_id)
        if saves.due():
            saves.save(indexes)

    def ingest(embed, *, measure: bool) -> IndexReport:
        try:
            report = run_index(
                files,
                store=cat.store,
                embed=embed,
                on_stored=on_stored,
                on_removed=indexes.removed,
                leader_of=lambda record, own_id: find_leader(
                    indexes.tracks,
                    cat.store,
                    exclude=own_id,
                    vector=cat.transform(record.vector[None, :])[0],
                    windows=Windows(record.window_starts, record.window_ends, record.window_vectors, record.duration),
                    rule=rule,
                ),
                retry_failed=retry_failed,
                progress=progress,
                on_retagged=indexes.retagged,
                redo=None if text is None else lambda track: not cat.store.has_text_vector(track.id),
            )
            gone, report.empty_folders = vanished(cat, paths, files, prune_empty=prune_empty)
            report.removed = len(remove(cat, gone)) if gone else 0
            refresh_calibration(cat)  # when the catalog has grown (or shrunk) enough to need it
            after_ingest(cat, rule, stored_ids, measure=measure)
        finally:
            saves.save(indexes)
        report.saving_s = round(saves.total, 3)
        return report

    if ray is not None:
        return _on_ray(cat, ingest, ray, text)
    # The workers start before the model loads, so they share none of its memory or threads.
    count = default_workers() if decoders is None else decoders
    with Workers(read, count=count, timeout_s=decode_timeout_s) as workers:
        encoder = cat.encoder
        claim = mover(cat.store)
        encoder.text = text  # every layer runs while the text vectors are made
        try:
            report = ingest(lambda jobs: embed_jobs(jobs, encoder=encoder, workers=workers, claim=claim), measure=True)
        finally:
            encoder.text = None
        report.device, report.precision, report.decoders = str(encoder.device), encoder.precision, count
        return report


def remove(cat: Core, ids: list[int]) -> list[int]:
    """Take tracks out of the database and the indexes (the caller holds the writer lock)."""
    indexes = cat.indexes
    indexes.load()
    for track_id in ids:
        indexes.removed(track_id, cat.store.delete_track(track_id))
    indexes.save()
    return ids


def _on_ray(cat: Core, ingest, settings: RaySettings, text) -> IndexReport:
    """Decode and embed on Ray; the model is never loaded here (the actors check its weights);
    ``text``: CLaMP 3's towers, which make the text vectors here from the actors' means."""
    from mertsearch.indexer.distributed import RayRun, embed_on_ray

    spec = cat.manifest.encoder
    checkpoint = cat.checkpoint or checkpoint_of(spec)
    model = {"directory": str(checkpoint.directory), "batch_size": cat.batch_size, "precision": cat.precision}
    run = RayRun()
    report = ingest(
        lambda jobs: embed_on_ray(
            jobs,
            spec=spec,
            model=model,
            windows=cat.windows,
            shards=cat.directory / SHARD_DIR,
            settings=settings,
            run=run,
            text=text,
        ),
        measure=False,  # the model runs on the cluster only
    )
    report.device = f"ray ({run.actors} actor(s), {run.device})" if run.device else "ray"
    report.precision, report.decoders = run.precision, 0
    report.executor, report.from_shards = "ray", run.from_shards
    return report


def vanished(
    cat: Core, paths: Iterable[str | os.PathLike], files: list[Path], *, prune_empty: bool
) -> tuple[list[int], list[str]]:
    """Tracks under the indexed folders whose files are gone, and the folders with tracks in the
    catalog but no audio file at all now, whose tracks are kept unless ``prune_empty``."""
    found = {os.fsdecode(f) for f in files}
    roots = {
        os.fsdecode(folder).rstrip(os.sep) + os.sep: os.fsdecode(folder)
        for folder in (Path(p).expanduser().absolute() for p in paths)
        if folder.is_dir()
    }
    # Folders without a single audio file now, that held tracks: a disk not mounted, most likely.
    empty = [
        folder
        for prefix, folder in roots.items()
        if not any(f.startswith(prefix) for f in found) and cat.store.paths_under([prefix])
    ]
    prefixes = [prefix for prefix, folder in roots.items() if prune_empty or folder not in empty]
    if not prefixes:
        return [], empty
    return [
        track_id for track_id, path in cat.store.paths_under(prefixes) if path not in found and surely_gone(path)
    ], empty
