"""Musly's timbre model on a catalog's files and the same excerpt task as `mertsearch eval`.

A side-by-side row for the evaluation table: Musly (a well-known pre-deep-learning music
similarity library) analyses every file of the catalog, then hears the very same excerpts, with
the same degradations and seed, that `mertsearch eval` plays. It reports recall@1 and recall@k
(Musly gives no position within a track). Needs `pip install pymusly` (not a dependency).

    .venv/bin/python bench/musly.py --catalog ./demo-catalog [--excerpts 20] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch import Catalog  # noqa: E402
from mertsearch.audio.decode import decode_audio  # noqa: E402
from mertsearch.evaluation.excerpts import DEGRADATIONS, degraded, draw_excerpts  # noqa: E402

MUSLY_RATE = 22050  # what track_from_audiodata expects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--excerpts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import pymusly
    except ImportError:
        sys.exit("pymusly is not installed: pip install pymusly")

    with Catalog.open(args.catalog, mmap=True) as cat:
        # The same draws as Catalog.evaluate: same seed, same order of random choices.
        rng = np.random.default_rng(args.seed)
        excerpts = draw_excerpts(cat, count=args.excerpts, seconds=args.seconds, rng=rng)
        rate = cat.encoder.sample_rate
        files = [path for _, path, _ in cat.store.durations()]
    jukebox = pymusly.MuslyJukebox(method="timbre")
    started = time.perf_counter()
    tracks = [jukebox.track_from_audiodata(decode_audio(path, sample_rate=MUSLY_RATE).tolist()) for path in files]
    jukebox.set_style([tracks[i] for i in np.random.default_rng(0).permutation(len(tracks))[:1000]])
    registered = list(enumerate(tracks))
    jukebox.add_tracks(registered)
    analysis_s = time.perf_counter() - started
    hits1, hitsk = dict.fromkeys(DEGRADATIONS, 0), dict.fromkeys(DEGRADATIONS, 0)
    for name, excerpt, samples in degraded(excerpts, rate, rng):
        query = jukebox.track_from_audiodata(decode_audio((samples, rate), sample_rate=MUSLY_RATE).tolist())
        # Registered while it is compared: Musly normalises distances with each track's statistics.
        query_id = len(tracks)
        jukebox.add_tracks([(query_id, query)])
        # Musly's "similarity" is a distance: the smaller, the closer.
        distances = np.array(jukebox.compute_similarity((query_id, query), registered))
        jukebox.remove_tracks([query_id])
        rank = [files[i] for i in np.argsort(distances, kind="stable")].index(excerpt.path)
        hits1[name] += rank == 0
        hitsk[name] += rank < args.k
    rows = {
        name: {
            "recall_at_1": round(hits1[name] / len(excerpts), 4),
            f"recall_at_{args.k}": round(hitsk[name] / len(excerpts), 4),
        }
        for name in DEGRADATIONS
    }
    result = {
        "catalog": str(args.catalog),
        "files": len(files),
        "excerpts": len(excerpts),
        "seed": args.seed,
        "analysis_s": round(analysis_s, 1),
        "degradations": rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"musly timbre on {len(files)} files ({analysis_s:.0f} s to analyse), {len(excerpts)} excerpts")
    for name, row in rows.items():
        print(f"{name:>34}: recall@1 {row['recall_at_1']:.2f}  recall@{args.k} {row[f'recall_at_{args.k}']:.2f}")


if __name__ == "__main__":
    main()
