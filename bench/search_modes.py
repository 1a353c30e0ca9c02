"""Which search mode serves clip queries best: excerpt identification, segments vs tracks.

A catalog of generated tunes (every tune changes all the time, like music) is indexed once; then
excerpts cut at random offsets (off the window grid), clean and with noise at 10 dB SNR, are
searched in both modes. Prints recall@1, recall@10 and the median error of the reported position.
Full-size MERT-v1-95M with random weights by default (the real compute); `--small` for a quick run.

    .venv/bin/python bench/search_modes.py [--tracks 24] [--queries 40] [--small] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import DISCERNING, melody_track, write_audio, write_tiny_mert  # noqa: E402

SR = 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--excerpt", type=float, default=10.0, help="seconds")
    parser.add_argument("--hop", type=float, default=2.5)
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--small", action="store_true", help="a small random model instead of full-size MERT")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, _ = write_tiny_mert(root / "model", overrides=DISCERNING if args.small else MERT_V1_95M)
        layer = min(args.layer, 2) if args.small else args.layer
        lengths = rng.uniform(20, 40, args.tracks)
        tunes = [melody_track(1000 + n, length, SR) for n, length in enumerate(lengths)]
        for n, tune in enumerate(tunes):
            write_audio(root / "music" / f"{n:03d}.flac", tune, SR)
        with Catalog.create(root / "cat", model=str(model), layer=layer, hop=args.hop) as cat:
            started = time.monotonic()
            cat.index_paths([root / "music"])
            index_s = time.monotonic() - started
            cat.reindex(transform="center")
            ids = {cat.track_id(root / "music" / f"{n:03d}.flac"): n for n in range(args.tracks)}
            rows = {}
            for condition in ("clean", "noise 10 dB"):
                for mode in ("segments", "tracks"):
                    rows[(condition, mode)] = {"hits1": 0, "hits10": 0, "errors": [], "seconds": 0.0}
            for _ in range(args.queries):
                n = int(rng.integers(args.tracks))
                offset = float(rng.uniform(0, lengths[n] - args.excerpt))
                clip = tunes[n][:, int(offset * SR) : int((offset + args.excerpt) * SR)]
                noisy = clip + rng.normal(0, np.sqrt(np.mean(clip**2) / 10), clip.shape).astype(np.float32)
                for condition, samples in (("clean", clip), ("noise 10 dB", noisy)):
                    for mode in ("segments", "tracks"):
                        started = time.monotonic()
                        results = cat.search((samples, SR), k=10, mode=mode)
                        row = rows[(condition, mode)]
                        row["seconds"] += time.monotonic() - started
                        found = [ids[r.track_id] for r in results]
                        row["hits1"] += found[:1] == [n]
                        row["hits10"] += n in found
                        if found[:1] == [n]:
                            row["errors"].append(abs(results[0].offset - offset))
    table = [
        {
            "condition": condition,
            "mode": mode,
            "recall_at_1": row["hits1"] / args.queries,
            "recall_at_10": row["hits10"] / args.queries,
            "median_position_error_s": round(float(np.median(row["errors"])), 2) if row["errors"] else None,
            "mean_query_s": round(row["seconds"] / args.queries, 3),
        }
        for (condition, mode), row in rows.items()
    ]
    result = {
        "model": "small random" if args.small else "MERT-v1-95M random",
        "tracks": args.tracks,
        "queries": args.queries,
        "excerpt_s": args.excerpt,
        "hop_s": args.hop,
        "index_s": round(index_s, 1),
        "rows": table,
    }
    if args.json:
        print(json.dumps(result))
        return
    print({k: v for k, v in result.items() if k != "rows"})
    for row in table:
        print(
            f"  {row['condition']:<12} {row['mode']:<9} recall@1 {row['recall_at_1']:.2f}  "
            f"recall@10 {row['recall_at_10']:.2f}  median position error {row['median_position_error_s']} s  "
            f"{row['mean_query_s']} s/query"
        )


if __name__ == "__main__":
    main()
