"""Layer choice and centering on a full-size MERT-v1-95M (random weights): what the tools report.

Generates a small labelled catalog (3 synthetic "genres" x N tracks), indexes it once with every
layer kept, then prints tune-layer's table (raw and centered) and the score spread that
`reindex --transform center` gives. Random weights say nothing about real retrieval quality; the
timings and the anisotropy of mean-pooled vectors are what this shows.

    .venv/bin/python bench/layers.py [--tracks-per-genre 6] [--seconds 10] [--json]
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
from tests.helpers import write_audio, write_tiny_mert  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks-per-genre", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, _ = write_tiny_mert(root / "mert-v1-95m-random", overrides=MERT_V1_95M)
        rng = np.random.default_rng(0)
        t = np.arange(int(24000 * args.seconds)) / 24000
        for genre, (base, noise, beat) in enumerate([(220, 0.02, 2.0), (440, 0.3, 0.0), (97, 0.1, 4.0)]):
            for i in range(args.tracks_per_genre):
                f = base * (1 + 0.02 * i)
                pulse = 1.0 if beat == 0 else 0.6 + 0.4 * np.sin(2 * np.pi * beat * t) ** 2
                x = pulse * (0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 2.01 * f * t))
                x += rng.normal(0, noise, len(t))
                write_audio(
                    root / "music" / f"genre{genre}" / f"{i}.flac", np.clip(x, -1, 1)[None].astype(np.float32), 24000
                )
        with Catalog.create(root / "cat", model=str(model), layer=7, keep_layers=True) as cat:
            started = time.monotonic()
            cat.index_paths([root / "music"])
            index_s = time.monotonic() - started
            started = time.monotonic()
            tuned = cat.tune_layers()
            tune_s = time.monotonic() - started
            centered = cat.reindex(transform="center")
            switched = cat.reindex(layer=tuned["recommended_layer"])
            info = cat.info()
    result = {
        "tracks": tuned["tracks"],
        "index_seconds": round(index_s, 1),
        "tune_layer_seconds": round(tune_s, 2),
        "reindex_layer_seconds": switched["seconds"],
        "layer_vectors_bytes": info["layer_vectors_bytes"],
        "database_bytes": info["database_bytes"],
        "scores_raw": centered["scores_before"],
        "scores_centered": centered["scores_after"],
        "layers": [
            {k: row[k] for k in ("layer", "map", "map_centered", "precision_at_k", "precision_at_k_centered")}
            for row in tuned["layers"]
        ],
        "recommended_layer": tuned["recommended_layer"],
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key != "layers":
            print(f"{key:>22}: {value}")
    for row in result["layers"]:
        print(f"{'layer ' + str(row['layer']):>22}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "layer"))


if __name__ == "__main__":
    main()
