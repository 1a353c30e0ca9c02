"""`verify` and `repair` on a healthy synthetic catalog: how long each takes at a given size.

Synthetic tracks of --windows windows each (random vectors around 200 cluster centres) are written
straight into the real store, a thousand tracks a transaction, and indexed by the real indexes.
Timed: `verify` (the median of --repeats), a default `repair` (which finds nothing to do) and,
with --full, a `repair --full` (which rebuilds both indexes and relinks every track); --no-repair
times `verify` alone.

    .venv/bin/python bench/maintenance.py [--tracks 10000] [--windows 50] [--dim 768] [--catalog DIR]
        [--no-repair] [--full] [--json]

With --catalog, the catalog is kept there and a later run reuses it (no fill): so one catalog can
be measured by two versions of the code, one after the other.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_facts  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.storage.records import to_blob  # noqa: E402
from mertsearch.storage.schema import Track, Window  # noqa: E402
from tests.helpers import write_tiny_mert  # noqa: E402


def fill(cat: Catalog, tracks: int, windows: int, rng: np.random.Generator) -> None:
    """Rows as an ingest stores them (ids given, so windows need no round trip), without the ORM."""
    dim = cat.manifest.encoder.dim
    centres = rng.normal(size=(200, dim))
    window_id = 1
    for first in range(0, tracks, 1000):
        track_rows, window_rows = [], []
        for n in range(first, min(first + 1000, tracks)):
            vectors = centres[rng.integers(len(centres))] + rng.normal(0, 0.3, (windows, dim))
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
            mean = vectors.mean(axis=0)
            track_rows.append(
                {
                    "id": n + 1,
                    "path": f"/synthetic/{n:06d}.flac",
                    "size": 1,
                    "mtime_ns": 1,
                    "sha256": f"{n:064x}",
                    "duration": 5.0 * windows,
                    "vector": to_blob(mean / np.linalg.norm(mean)),
                    "indexed_at": time.time(),
                }
            )
            for position, vector in enumerate(vectors):
                window_rows.append(
                    {
                        "id": window_id,
                        "track_id": n + 1,
                        "position": position,
                        "start": 5.0 * position,
                        "end": 5.0 * position + 5.0,
                        "vector": to_blob(vector),
                    }
                )
                window_id += 1
        with cat.store.engine.begin() as connection:
            connection.execute(insert(Track), track_rows)
            connection.execute(insert(Window), window_rows)
    cat.store.update_meta({}, bump_version=True)


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return round(time.perf_counter() - started, 2), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--catalog", type=Path, help="keep the catalog here; reuse it if it is there")
    parser.add_argument("--no-repair", action="store_true", help="time verify alone")
    parser.add_argument("--full", action="store_true", help="also time repair --full")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.catalog or Path(tmp) / "cat"
        fill_s = None
        if not (directory / "manifest.json").exists():
            # A model only for its manifest (the vectors' size): it is never run.
            overrides = {"hidden_size": args.dim, "num_attention_heads": 1, "num_conv_pos_embedding_groups": 1}
            model, _ = write_tiny_mert(directory.parent / f"{directory.name}-model", overrides=overrides)
            with Catalog.create(directory, model=str(model), layer=2) as cat:
                started = time.perf_counter()
                fill(cat, args.tracks, args.windows, rng)
                cat.rebuild_index()
                fill_s = round(time.perf_counter() - started, 1)
        with Catalog.open(directory) as cat:
            counts = cat.store.counts()
            verify_s, problems = [], []
            for _ in range(args.repeats):
                seconds, problems = timed(cat.verify)
                verify_s.append(seconds)
            repair_s, done = (None, []) if args.no_repair else timed(cat.repair)
            full_s = None
            if args.full and "full" in inspect.signature(cat.repair).parameters:
                full_s, _ = timed(lambda: cat.repair(full=True))
    document = {
        "machine": cpu_facts(),
        "tracks": counts["tracks"],
        "windows": counts["windows"],
        "dim": cat.manifest.encoder.dim,
        "fill_s": fill_s,
        "verify_s": statistics.median(verify_s),
        "problems": problems,
        "repair_s": repair_s,
        "repair_done": done,
        "repair_full_s": full_s,
    }
    if args.json:
        print(json.dumps(document))
        return
    print(f"{counts['tracks']} tracks, {counts['windows']} windows of {document['dim']} dims; {cpu_facts()}")
    print(f"  verify            {document['verify_s']:8.2f} s  ({len(problems)} problem(s))")
    if repair_s is not None:
        print(f"  repair            {repair_s:8.2f} s  ({'; '.join(done) or 'nothing done'})")
    if full_s is not None:
        print(f"  repair --full     {full_s:8.2f} s")


if __name__ == "__main__":
    main()
