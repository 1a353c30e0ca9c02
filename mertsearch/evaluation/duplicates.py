"""Duplicate detection measured on a catalog's own tracks.

Copies of some tracks are made the ways a library comes to hold one recording twice (lossy
re-encodes, another sample rate, a trimmed start), embedded like any file and checked against the
catalog exactly as an ingest would check them, without adding them to it: a copy linked to its
source's recording is found, one linked to another recording is wrongly linked. The catalog's
own tracks are then checked against each other (each against its nearest tracks and the other
tracks of its folder, often an album): pairs the catalog does not group as one recording that the
rule would link are wrong links too. Everything is drawn from one seed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.audio.copies import CopyKind
from mertsearch.errors import MertSearchError
from mertsearch.indexer.duplicates import DURATION_TOLERANCE_S, MAX_DISTANCE, Windows
from mertsearch.indexer.relink import DuplicateCheck

if TYPE_CHECKING:
    from mertsearch.evaluation.protocol import CatalogLike


COPY_KINDS = {
    "mp3 128 kbit/s": CopyKind("mp3", 128_000),
    "mp3 192 kbit/s": CopyKind("mp3", 192_000),
    "aac 128 kbit/s": CopyKind("m4a", 128_000),
    "opus 96 kbit/s": CopyKind("opus", 96_000, rate=48_000),
    "resampled, flac": CopyKind("flac", resample=True),
    "1 s trimmed at the start, flac": CopyKind("flac", trim_s=1.0),
}
# Longer tracks are not copied: a source is decoded whole, at its own rate, to be encoded again.
MAX_COPY_S = 900.0
# The catalog's own tracks checked against each other, at most (a seeded sample), and the other
# tracks of a folder each is checked against, at most.
PAIR_TRACKS = 500
FOLDER_TRACKS = 50


def make_copies(source: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """(kind, file) for each of COPY_KINDS made from the file at ``source``; each file is deleted
    once the next one is asked for."""
    from mertsearch.audio.decode import native_audio

    samples, rate = native_audio(source)
    for number, (name, kind) in enumerate(COPY_KINDS.items()):
        target = folder / f"copy{number}.{kind.suffix}"
        target.write_bytes(kind.encode(samples, rate))
        try:
            yield name, target
        finally:
            target.unlink(missing_ok=True)


def evaluate_duplicates(catalog: CatalogLike, check: DuplicateCheck, *, tracks: int, seed: int) -> dict:
    """Precision and recall of duplicate detection on copies of ``tracks`` catalog tracks, and
    the catalog's distinct pairs checked (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    leaders = [(i, path) for i, path, duration in catalog.store.durations() if duration <= MAX_COPY_S]
    order = rng.permutation(len(leaders))
    rows = {name: {"copies": 0, "found": 0, "wrongly_linked": 0, "missed": 0, "distances": []} for name in COPY_KINDS}
    copied, unreadable = 0, 0
    with tempfile.TemporaryDirectory(prefix="mertsearch-copies-") as folder:
        for index in order:
            if copied == tracks:
                break
            track_id, path = leaders[index]
            try:
                made = [(name, catalog.embed(copy)) for name, copy in make_copies(path, Path(folder))]
            except (MertSearchError, OSError, RuntimeError, ValueError):  # gone, changed, or FFmpeg refused it
                unreadable += 1
                continue
            copied += 1
            for name, embedding in made:
                row = rows[name]
                windows = Windows(
                    embedding.window_starts, embedding.window_ends, embedding.window_vectors, embedding.duration
                )
                leader = check.leader_of(embedding.vector, windows)
                row["copies"] += 1
                row["found" if leader == track_id else "missed" if leader is None else "wrongly_linked"] += 1
                row["distances"].append(check.distance(windows, track_id))
    found = sum(row["found"] for row in rows.values())
    wrong = sum(row["wrongly_linked"] for row in rows.values())
    total = sum(row["copies"] for row in rows.values())
    return {
        "rule": {
            "distance": check.rule.distance,
            "basis": check.rule.basis,
            "described": check.rule.describe(),
            "max_distance": MAX_DISTANCE,
            "nearest_distinct": check.rule.nearest_distinct,
            "measured_tracks": check.rule.measured_tracks,
            "copies": None if check.rule.copies is None else check.rule.copies.distances,
            "duration_tolerance_s": DURATION_TOLERANCE_S,
        },
        "tracks_copied": copied,
        "tracks_unreadable": unreadable,
        "copies": {name: _summary(row) for name, row in rows.items()},
        "precision": round(found / (found + wrong), 4) if found + wrong else None,
        "recall": round(found / total, 4) if total else None,
        "distinct_pairs": _distinct_pairs(catalog, check, rng),
    }


def _summary(row: dict) -> dict:
    distances = np.array(row.pop("distances"), dtype=np.float64)
    row["recall"] = round(row["found"] / row["copies"], 4) if row["copies"] else None
    finite = distances[np.isfinite(distances)]
    row["median_distance"] = float(np.median(finite)) if len(finite) else None
    row["max_distance"] = float(finite.max()) if len(finite) else None
    return row


def _distinct_pairs(catalog: CatalogLike, check: DuplicateCheck, rng: np.random.Generator) -> dict:
    """The catalog's tracks against their nearest tracks and the others of their folder."""
    # Paths and durations only: the rows' vectors would be gigabytes in a large catalog.
    paths, durations = {}, {}
    for i, path, duration in catalog.store.durations(copies=True):
        paths[i], durations[i] = path, duration
    ids = sorted(paths)
    if len(ids) > PAIR_TRACKS:
        ids = sorted(rng.choice(ids, PAIR_TRACKS, replace=False).tolist())
    folders: dict[Path, list[int]] = {}
    for i in sorted(paths):
        folders.setdefault(Path(paths[i]).parent, []).append(i)
    others = {i: folders[Path(paths[i]).parent][:FOLDER_TRACKS] for i in ids}
    checks = check.pairs(ids, others)
    distinct = [c for c in checks if not c.grouped]
    same_folder = [c for c in distinct if Path(paths[c.a]).parent == Path(paths[c.b]).parent]
    fitting = [c for c in distinct if abs(durations[c.a] - durations[c.b]) <= DURATION_TOLERANCE_S]

    def closest(pairs: list) -> dict | None:
        finite = [c for c in pairs if np.isfinite(c.distance)]
        if not finite:
            return None
        best = min(finite, key=lambda c: c.distance)
        return {"distance": best.distance, "paths": [paths[best.a], paths[best.b]]}

    return {
        "tracks": len(ids),
        "pairs": len(distinct),
        "same_folder": len(same_folder),
        "durations_fit": len(fitting),
        "linked": len([c for c in distinct if c.linked]),
        "linked_paths": [[paths[c.a], paths[c.b]] for c in distinct if c.linked],
        "grouped": len(checks) - len(distinct),
        "closest": closest(distinct),
        "closest_durations_fit": closest(fitting),
    }
