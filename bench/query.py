"""End-to-end latency of a 10 s clip query against a 10,000-track catalog: decode, embed, search.

The catalog's vectors are synthetic (random, in clusters), stored through the real store and
indexed by the real indexes: the search cost depends on their number, not their origin. The
query is decoded by FFmpeg and embedded by full-size MERT-v1-95M (random weights: the real
compute) at the chosen layer with its probe window, then searched in segments mode, as
`mertsearch search` does.

    .venv/bin/python bench/query.py [--tracks 10000] [--queries 10] [--layer 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.audio.decode import decode_audio  # noqa: E402
from mertsearch.encoder.embed import embed_chunks  # noqa: E402
from mertsearch.encoder.pooling import l2_normalize  # noqa: E402
from tests.helpers import melody_track, synthetic_track, write_audio, write_tiny_mert  # noqa: E402

SR = 44100


def fill(cat: Catalog, tracks: int, rng: np.random.Generator) -> None:
    """Synthetic tracks of 3-5 minutes (36-60 windows of 5 s), vectors around 200 cluster centres."""
    dim = cat.manifest.encoder.dim
    centres = l2_normalize(rng.normal(size=(200, dim)))
    for n in range(tracks):
        count = int(rng.integers(36, 61))
        centre = centres[rng.integers(len(centres))]
        windows = l2_normalize(centre + rng.normal(0, 0.05, (count, dim)))
        cat.store.put_track(synthetic_track(n, windows))


def matmul_gflops() -> float:
    """This machine's fp32 matrix-product rate, on the shape of a transformer layer's feed-forward."""
    a, b = torch.randn(375, 768), torch.randn(768, 3072)
    best = float("inf")
    for _ in range(10):  # the best of several tries: this machine is noisy
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, time.perf_counter() - started)
    return 10 * 2 * 375 * 768 * 3072 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gflops = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, _ = write_tiny_mert(root / "model", overrides=MERT_V1_95M)
        clips = [write_audio(root / f"clip{n}.flac", melody_track(n, 10, SR), SR) for n in range(args.queries)]
        with Catalog.create(root / "cat", model=str(model), layer=args.layer) as cat:
            started = time.perf_counter()
            fill(cat, args.tracks, rng)
            cat.rebuild_index()
            build_s = time.perf_counter() - started
            encoder = cat.encoder
            cat.search(clips[0], k=10)  # warm up
            parts = {"decode": [], "embed": [], "search": [], "total": []}
            for clip in clips:
                t0 = time.perf_counter()
                samples = decode_audio(clip, sample_rate=encoder.sample_rate)
                t1 = time.perf_counter()
                embedding = embed_chunks(encoder, [samples], cat.windows, probe=True)
                t2 = time.perf_counter()
                cat.search_embedding(embedding, k=10, mode="segments")
                t3 = time.perf_counter()
                for name, value in (("decode", t1 - t0), ("embed", t2 - t1), ("search", t3 - t2), ("total", t3 - t0)):
                    parts[name].append(value)
            kinds = {"tracks": cat.indexes.tracks.factory, "windows": cat.indexes.windows.factory}
            windows = len(cat.indexes.windows)
    result = {
        **cpu_facts(),
        "tracks": args.tracks,
        "windows": windows,
        "index_kinds": kinds,
        "catalog_build_s": round(build_s, 1),
        "layer": args.layer,
        "clip_windows": len(embedding.window_vectors) + (embedding.probes is not None),
        **{f"{name}_p50_s": round(float(np.percentile(v, 50)), 4) for name, v in parts.items()},
        **{f"{name}_p95_s": round(float(np.percentile(v, 95)), 4) for name, v in parts.items()},
        "precision": encoder.precision,
        "runtime": f"PyTorch {torch.__version__}, eager",
        # What fp32 arithmetic allows here (bf16 goes below it): the clip's three windows, its probe's
        # included (~15.5 GFLOP per audio second up to layer 7: the convolutional front end ~8, each
        # transformer layer ~1.1) at this CPU's fp32 matmul rate.
        "fp32_matmul_gflops": round(gflops, 1),
        "embed_floor_fp32_s": round(15 * (8.0 + 1.06 * args.layer) / gflops, 3),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:>18}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
