"""Duplicate detection before and after the aligned, catalog-fitted rule, on a catalog's own tracks.

The copies `mertsearch eval` makes (mp3 128 and 192 kbit/s, aac, opus, resampled, a 1 s trimmed
start) of ``--tracks`` tracks, each checked against the catalog by the rule of earlier versions
(every window, position by position, within cosine 0.999 of a candidate's, candidates scoring
0.98 in the track index, durations within 1 s) and by the engine's rule; then every pair of the
catalog's tracks within a folder (an album) and with its nearest tracks, under both rules.

    .venv/bin/python bench/duplicates.py --catalog DIR [--tracks 30] [--seed 0] [--cache DIR] [--json]
        [--songs N [--model spectral|tiny]]

``--cache DIR`` keeps each copy's window vectors there and reads them back on the next run, so
the rules can be compared again without encoding and embedding the copies again. ``--songs N``
first makes the catalog at DIR (which must not exist) from N generated songs (the tests'
``song_track``: chords, bass, melody and drums, 22 to 50 s, in DIR-music) with the spectral
baseline or the tests' small random MERT (``tiny``: its discerning settings, layer 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch import Catalog  # noqa: E402
from mertsearch.catalog.duplicates import checker  # noqa: E402
from mertsearch.evaluation.duplicates import COPY_KINDS, MAX_COPY_S, make_copies  # noqa: E402
from mertsearch.indexer.duplicates import DURATION_TOLERANCE_S, Windows  # noqa: E402
from tests.helpers import DISCERNING, SAMPLE_RATE, song_track, write_audio, write_tiny_mert  # noqa: E402

# The rule of earlier versions.
OLD_WINDOW_COSINE = 0.999
OLD_DURATION_TOLERANCE_S = 1.0
OLD_CANDIDATE_SCORE = 0.98


def old_same(a: Windows, b: Windows) -> bool:
    if abs(a.duration - b.duration) > OLD_DURATION_TOLERANCE_S or abs(len(a.vectors) - len(b.vectors)) > 1:
        return False
    n = min(len(a.vectors), len(b.vectors))
    return float(np.min(np.sum(a.vectors[:n] * b.vectors[:n], axis=1))) >= OLD_WINDOW_COSINE


def old_leader(cat: Catalog, vector: np.ndarray, windows: Windows) -> int | None:
    scores, ids = cat.indexes.tracks.search(cat.transform(vector[None, :]), 8)
    candidates = [int(i) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0 and s >= OLD_CANDIDATE_SCORE]
    rows, stored = cat.store.tracks_by_id(candidates), cat.store.windows_of(candidates)
    for i in candidates:
        if i in rows and i in stored and old_same(windows, Windows.stored(*stored[i], rows[i].duration)):
            return rows[i].duplicate_of or i
    return None


def copies(cat: Catalog, path: str, folder: Path, cache: Path | None):
    """(kind, track vector, windows) of each copy of the file at ``path``, from ``cache`` when there."""
    saved = None if cache is None else cache / f"{hashlib.sha256(path.encode()).hexdigest()[:16]}.npz"
    if saved is not None and saved.exists():
        with np.load(saved) as data:
            for number, name in enumerate(COPY_KINDS):
                parts = [data[f"{number}-{part}"] for part in ("vector", "starts", "ends", "windows", "duration")]
                yield name, parts[0], Windows(parts[1], parts[2], parts[3], float(parts[4]))
        return
    arrays = {}
    for number, (name, copy) in enumerate(make_copies(path, folder)):
        embedding = cat.embed(copy)
        windows = Windows(embedding.window_starts, embedding.window_ends, embedding.window_vectors, embedding.duration)
        arrays |= {
            f"{number}-vector": embedding.vector,
            f"{number}-starts": windows.starts,
            f"{number}-ends": windows.ends,
            f"{number}-windows": windows.vectors,
            f"{number}-duration": np.array(windows.duration),
        }
        yield name, embedding.vector, windows
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        np.savez(saved, **arrays)


def generated(directory: Path, songs: int, model: str) -> None:
    """A catalog at ``directory`` of ``songs`` generated songs (see the module's docstring)."""
    music = directory.with_name(f"{directory.name}-music")
    for n in range(songs):
        write_audio(music / f"song{n:03d}.flac", song_track(n, 22 + (n * 7) % 29, SAMPLE_RATE), SAMPLE_RATE)
    settings = {"model": "spectral"}
    if model == "tiny":
        model_dir = directory.with_name(f"{directory.name}-model")
        settings = {"model": str(write_tiny_mert(model_dir, overrides=DISCERNING)[0]), "layer": 2}
    with Catalog.create(directory, **settings) as cat:
        cat.index_paths([music])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--tracks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--songs", type=int)
    parser.add_argument("--model", choices=["spectral", "tiny"], default="spectral")
    args = parser.parse_args()
    started = time.monotonic()
    if args.songs:
        generated(Path(args.catalog), args.songs, args.model)
    with Catalog.open(args.catalog) as cat:
        check = checker(cat)
        tally = {name: {"copies": 0, "old": [0, 0], "new": [0, 0], "distances": []} for name in COPY_KINDS}
        leaders = [(i, path) for i, path, duration in cat.store.durations() if duration <= MAX_COPY_S]
        chosen = [leaders[i] for i in np.random.default_rng(args.seed).permutation(len(leaders))[: args.tracks]]
        with tempfile.TemporaryDirectory() as folder:
            for track_id, path in chosen:
                for name, vector, windows in copies(cat, path, Path(folder), args.cache):
                    row = tally[name]
                    row["copies"] += 1
                    for key, leader in (
                        ("old", old_leader(cat, vector, windows)),
                        ("new", check.leader_of(vector, windows)),
                    ):
                        if leader is not None:
                            row[key][0 if leader == track_id else 1] += 1
                    row["distances"].append(check.distance(windows, track_id))
        rows = cat.store.tracks_by_id([i for i, _, _ in cat.store.track_links()])
        folders: dict[Path, list[int]] = {}
        for i in sorted(rows):
            folders.setdefault(Path(rows[i].path).parent, []).append(i)
        pairs = check.pairs(sorted(rows), {i: folders[Path(rows[i].path).parent] for i in rows})
        stored = cat.store.windows_of(sorted(rows))
        windows_of = {i: Windows.stored(*stored[i], rows[i].duration) for i in stored}
        distinct = [p for p in pairs if not p.grouped]
        old_linked = [p for p in distinct if old_same(windows_of[p.a], windows_of[p.b])]
        same_folder = [p for p in distinct if Path(rows[p.a].path).parent == Path(rows[p.b].path).parent]
        closest = min(distinct, key=lambda p: p.distance) if distinct else None
        fitting = [p for p in distinct if abs(rows[p.a].duration - rows[p.b].duration) <= DURATION_TOLERANCE_S]
        closest_fitting = min(fitting, key=lambda p: p.distance) if fitting else None
        result = {
            "catalog": args.catalog,
            "model": cat.manifest.encoder.source,
            "tracks": len(rows),
            "copied": len(chosen),
            "rule": check.rule.describe(),
            "copies": {
                name: {
                    "copies": row["copies"],
                    "before_found": row["old"][0],
                    "before_wrong": row["old"][1],
                    "after_found": row["new"][0],
                    "after_wrong": row["new"][1],
                    "median_distance": float(np.median(row["distances"])),
                    "max_distance": float(np.max(row["distances"])),
                }
                for name, row in tally.items()
            },
            "distinct_pairs": len(distinct),
            "same_folder_pairs": len(same_folder),
            "before_linked_pairs": len(old_linked),
            "after_linked_pairs": sum(p.linked for p in distinct),
            "closest_distinct": None
            if closest is None
            else {"distance": closest.distance, "paths": [rows[closest.a].path, rows[closest.b].path]},
            "closest_distinct_durations_fit": None
            if closest_fitting is None
            else {
                "distance": closest_fitting.distance,
                "paths": [rows[closest_fitting.a].path, rows[closest_fitting.b].path],
            },
            "seconds": round(time.monotonic() - started, 1),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['catalog']}: {result['tracks']} tracks, {result['model']}; copies of {result['copied']} tracks")
    print(f"rule: {result['rule']}")
    print("| copy | copies | before: found / wrongly linked | after: found / wrongly linked | median / max distance |")
    print("|---|---|---|---|---|")
    for name, row in result["copies"].items():
        print(
            f"| {name} | {row['copies']} | {row['before_found']} / {row['before_wrong']} | "
            f"{row['after_found']} / {row['after_wrong']} | {row['median_distance']:.2g} / {row['max_distance']:.2g} |"
        )
    print(
        f"distinct pairs: {result['distinct_pairs']} ({result['same_folder_pairs']} in one folder); linked before "
        f"{result['before_linked_pairs']}, after {result['after_linked_pairs']}; closest {result['closest_distinct']}; "
        f"closest of one duration {result['closest_distinct_durations_fit']}"
    )
    print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
