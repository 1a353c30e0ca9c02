"""Every everyday call at two catalog sizes in one run: which grows with the catalog?

Synthetic tracks (--windows windows each of --dim dimensions, MERT-v1-95M's 768 by default, around
200 cluster centres; tagged by --artists artists) are stored through the real store and indexed by
the real indexes (the kinds `index` picks for the size), once for each size of --tracks. Then, on
each, the median (p50) and p95 of --repeats runs of: `similar` of one track, of 3 seeds, a radio
after 5 and after 500 songs, a path of 25, a 10 s and a 600 s clip (their window vectors taken
from stored tracks, so no model runs: the search's cost alone), a filtered search whose caps cannot
be met (a tenth of the catalog by five artists, k=10 at one per artist), `find_tracks`, `verify`
and `repair` on a healthy catalog. Each call also gives the peak of the memory it allocated in one more, untimed run
(tracemalloc: Python's and numpy's; FAISS's and SQLite's own are not counted), and its ratio to the
smallest size.

    .venv/bin/python bench/scale.py [--tracks 10000,100000] [--dim 768] [--windows 50] [--repeats 5]
                                    [--keep DIR] [--skip verify,repair] [--no-settle] [--json]

With --keep, each catalog is kept in DIR/<tracks> and a later run reuses it (no fill).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_facts  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.encoder.pooling import Embedding, l2_normalize  # noqa: E402
from mertsearch.storage.filters import Filters  # noqa: E402

HOP = 5.0  # synthetic_track's


def fill(
    cat: Catalog,
    tracks: int,
    windows: int,
    artists: int,
    rng: np.random.Generator,
    *,
    span: int | None = None,
    settle: bool = True,
) -> float:
    """Through the store's own put_track, a thousand tracks a transaction; the seconds it took,
    the index build and (``settle``) a first repair included, so the timed one meets a healthy
    catalog. A track's windows lie around one centre, or around another every ``span`` windows
    (a mix)."""
    from tests.helpers import synthetic_track  # torch and the rest: not for a process that only searches

    started = time.perf_counter()
    dim = cat.manifest.encoder.dim
    centres = l2_normalize(rng.normal(size=(200, dim))).astype(np.float32)
    store = cat.store
    for first in range(0, tracks, 1000):
        with store.session() as session, session.begin():
            for n in range(first, min(first + 1000, tracks)):
                picked = centres[rng.integers(len(centres), size=-(-windows // (span or windows)))]
                around = np.repeat(picked, span or windows, axis=0)[:windows]
                vectors = l2_normalize(around + rng.normal(0, 0.05, (windows, dim)).astype(np.float32))
                # Every tenth track is by one of five prolific artists: a filter to them allows a
                # tenth of the catalog, whose caps at one per artist cannot give ten results.
                artist = f"House {n // 10 % 5}" if n % 10 == 0 else f"Artist {n % artists}"
                tags = {"artist": artist, "album": f"Album {artist}-{n % 7}", "title": f"Song {n}"}
                store._put_track(session, synthetic_track(n, vectors.astype(np.float32), tags=tags))
    cat.rebuild_index()
    if settle:
        cat.repair()  # what an ingest does at its end (the similarity calibration, the duplicate links)
    return time.perf_counter() - started


def clip(cat: Catalog, track_ids: list[int], seconds: float) -> Embedding:
    """A clip of ``seconds`` as embedded: the stored windows of consecutive tracks (a mix)."""
    windows = cat.store.windows_of(track_ids)
    vectors = np.concatenate([windows[t][1] for t in track_ids])[: int(seconds / HOP)]
    starts = np.arange(len(vectors)) * HOP
    return Embedding(l2_normalize(vectors.mean(axis=0)), vectors, starts, starts + HOP, float(seconds))


def measured(repeats: int, action) -> dict:
    """p50 and p95 of ``repeats`` timed runs, then one more traced for its peak (tracing slows
    every allocation, so it is never timed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        value = action()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    try:
        action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] * 1000, 1),
        "peak_mb": round(peak / 2**20, 1),
        "count": len(value) if hasattr(value, "__len__") else value,
        "partial": bool(getattr(value, "partial", False)),
    }


def calls(cat: Catalog, artists: int) -> dict:
    ids = cat.store.ids("tracks")
    seed, others = int(ids[0]), [int(i) for i in ids[1 : len(ids) // 2 : max(1, len(ids) // 1000)]]
    history = [int(i) for i in ids[-500:]]
    short = clip(cat, [seed], 10)
    long = clip(cat, [int(i) for i in ids[:20]], 600)
    house = Filters(artist=tuple(f"House {n}" for n in range(5)))
    return {
        "similar": lambda: cat.similar(seed, k=10),
        "similar, 3 seeds": lambda: cat.similar([seed, *others[:2]], k=10),
        "radio, 5 songs": lambda: cat.radio(history[-5:], k=10),
        "radio, 500 songs": lambda: cat.radio(history, k=10),
        "path of 25": lambda: cat.path(seed, others[-1], 25),
        "clip 10 s": lambda: cat.search_embedding(short, k=10),
        "clip 600 s": lambda: cat.search_embedding(long, k=10),
        "caps unmet": lambda: cat.similar(seed, k=10, per_artist=1, filters=house),
        "find_tracks": lambda: cat.find_tracks("song 12")["total"],
        "verify": lambda: cat.verify(),
        "repair": lambda: cat.repair(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", default="10000,100000", help="catalog sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--artists", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the catalogs here; reuse those already there")
    parser.add_argument("--skip", default="", help="calls to leave out, comma-separated (e.g. verify,repair)")
    parser.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="fill without the first repair (fitting every duplicate link of a million tracks takes hours): "
        "then leave repair out",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tests.helpers import write_tiny_mert

    sizes = [int(n) for n in args.tracks.split(",")]
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}
    document = {"machine": cpu_facts(), "dim": args.dim, "windows": args.windows, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        overrides = {"hidden_size": args.dim, "num_attention_heads": 4, "intermediate_size": 64}
        model, _ = write_tiny_mert(root / f"model-{args.dim}", overrides=overrides)
        for size in sizes:
            directory = root / str(size)
            figures: dict = {}
            if not (directory / "manifest.json").exists():
                with Catalog.create(directory, model=str(model), layer=2) as cat:
                    rng = np.random.default_rng(0)
                    figures["fill_s"] = round(fill(cat, size, args.windows, args.artists, rng, settle=args.settle), 1)
                print(f"{size} tracks filled and indexed in {figures['fill_s']} s", file=sys.stderr, flush=True)
            with Catalog.open(directory) as cat:
                cat.similar(int(cat.store.ids("tracks")[0]), k=10)  # indexes loaded
                for name, action in calls(cat, args.artists).items():
                    if name not in skipped:
                        figures[name] = measured(1 if name in ("verify", "repair") else args.repeats, action)
                        print(f"{size} tracks, {name}: {figures[name]}", file=sys.stderr, flush=True)
            document["sizes"][size] = figures
    base = document["sizes"][sizes[0]]
    for figures in document["sizes"].values():
        for name, row in figures.items():
            if isinstance(row, dict):
                row["ratio"] = round(row["p50_ms"] / max(base[name]["p50_ms"], 0.01), 2)
    if args.json:
        print(json.dumps(document))
        return
    print(f"{args.dim} dimensions, {args.windows} windows a track; {document['machine']}")
    for size, figures in document["sizes"].items():
        print(f"{size} tracks" + (f" (filled and indexed in {figures['fill_s']} s)" if "fill_s" in figures else ""))
        for name, row in figures.items():
            if isinstance(row, dict):
                note = " partial" if row["partial"] else ""
                print(
                    f"  {name:18} p50 {row['p50_ms']:9.1f} ms  p95 {row['p95_ms']:9.1f} ms  "
                    f"peak {row['peak_mb']:7.1f} MB  x{row['ratio']:<6} {row['count']}{note}"
                )


if __name__ == "__main__":
    main()
