"""A long clip against a catalog of long mixes, each search in a fresh process: its wall time,
process start included, and its peak memory.

Synthetic mixes (--mixes of --hours each, a 5 s window every 5 s, a new passage every 4 min, 768
dimensions: MERT-v1-95M's) are stored through the real store and indexed by the real indexes,
then a --clip seconds long stretch of one mix is searched (segments mode, k=10), and a 10 s one as
the baseline, each --repeats times in a process of its own that opens the catalog, searches and
exits. The clip's window vectors are taken from the stored mix, so no model runs: the cost is the
search's (embedding a clip costs its length over the model's speed, in docs/performance.md).

    .venv/bin/python bench/long_clip.py [--mixes 500] [--hours 2] [--clip 600] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_facts  # noqa: E402
from bench.scale import HOP, fill  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import write_tiny_mert  # noqa: E402

# What one fresh process does: open, search, say what it found (a line of JSON).
SEARCH = """
import json, sys, time
sys.path.insert(0, {root!r})
from bench.scale import clip
from mertsearch import Catalog
with Catalog.open({catalog!r}, mmap=True) as cat:  # as the CLI opens it
    mix = int(cat.store.ids("tracks")[{mix}])
    started = time.perf_counter()
    found = cat.search_embedding(clip(cat, [mix], {seconds}), k=10)
    searched = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"search_s": searched, "first": found[0].track_id == mix, "offset": found[0].offset,
                  "partial": found.partial, "peak_kb": peak}}))
"""


def searched(catalog: Path, seconds: float, mix: int) -> dict:
    """One search in a process of its own: wall seconds (start to exit), the search's own, and
    the process's peak resident memory (VmHWM, as it exits: the mapped index's pages count)."""
    code = SEARCH.format(root=str(Path(__file__).resolve().parents[1]), catalog=str(catalog), mix=mix, seconds=seconds)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "peak_mb": row.pop("peak_kb") / 1024, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixes", type=int, default=500)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--clip", type=float, default=600.0, help="seconds")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the catalog here; reuse one already there")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    windows = int(args.hours * 3600 / HOP)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        directory = root / f"mixes-{args.mixes}x{windows}"
        filled = None
        if not (directory / "manifest.json").exists():
            overrides = {"hidden_size": args.dim, "num_attention_heads": 4, "intermediate_size": 64}
            model, _ = write_tiny_mert(root / f"model-{args.dim}", overrides=overrides)
            with Catalog.create(directory, model=str(model), layer=2) as cat:
                filled = fill(cat, args.mixes, windows, args.mixes, np.random.default_rng(0), span=48)
            print(f"{args.mixes} mixes filled and indexed in {filled:.0f} s", file=sys.stderr, flush=True)
        rows = {}
        for seconds in (10.0, args.clip):
            runs = [searched(directory, seconds, mix) for mix in range(args.repeats)]
            rows[seconds] = {
                "wall_p50_s": round(statistics.median(r["wall_s"] for r in runs), 2),
                "wall_max_s": round(max(r["wall_s"] for r in runs), 2),
                "search_p50_s": round(statistics.median(r["search_s"] for r in runs), 2),
                "peak_mb": round(max(r["peak_mb"] for r in runs)),
                "found_first": sum(r["first"] for r in runs),
                "partial": sum(r["partial"] for r in runs),
                "runs": len(runs),
            }
            print(f"clip {seconds:.0f} s: {rows[seconds]}", file=sys.stderr, flush=True)
    document = {"machine": cpu_facts(), "mixes": args.mixes, "windows": windows, "fill_s": filled, "clips": rows}
    if args.json:
        print(json.dumps(document))
        return
    print(f"{args.mixes} mixes of {args.hours:g} h ({windows} windows each, {args.dim} dims); {document['machine']}")
    for seconds, row in rows.items():
        print(
            f"  clip {seconds:5.0f} s: wall p50 {row['wall_p50_s']:6.2f} s (max {row['wall_max_s']:.2f}), "
            f"search p50 {row['search_p50_s']:6.2f} s, peak {row['peak_mb']:6.0f} MB, "
            f"found first {row['found_first']}/{row['runs']}, partial {row['partial']}"
        )


if __name__ == "__main__":
    main()
