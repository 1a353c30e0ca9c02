"""Index kinds at scale: recall@10 against exact search, latency and memory, for the automatic choices.

Synthetic 768-d vectors in 2,000 clusters (L2-normalised, like the catalog's vectors) at 10k, 100k
and 1M; 200 held-out queries from the same distribution. Each size gets the kind
`choose_factory` picks, trained and searched as the catalog does: FAISS returns 4k candidates,
which are re-scored exactly (the catalog reads the exact vectors from SQLite) and the top k kept.

    .venv/bin/python bench/index.py [--sizes 10000,100000,1000000] [--nprobe-sweep] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch.storage.indexes import TRAIN_PER_LIST  # noqa: E402
from mertsearch.storage.vector_index import VectorIndex, choose_factory  # noqa: E402

DIM = 768
K = 10


def normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, centers: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for first in range(0, n, 100_000):
        m = min(100_000, n - first)
        labels = rng.integers(len(centers), size=m)
        # spread 0.75: cosine to the cluster centre about 0.8; 1.5: about 0.55 (neighbours cross clusters).
        out[first : first + m] = normalize(centers[labels] + rng.normal(0, spread / np.sqrt(DIM), (m, DIM)))
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), k), np.int64)
    for first in range(0, len(data), 200_000):
        scores = queries @ data[first : first + 200_000].T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        merged_ids = np.concatenate([best_ids, top + first], 1)
        order = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(merged_scores, order, 1), np.take_along_axis(merged_ids, order, 1)
    return best_ids


def measure(index: VectorIndex, data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    search_ms, total_ms, hits = [], [], 0
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        _, ids = index.search(query[None], 4 * K)
        searched = time.perf_counter()
        candidates = ids[0][ids[0] >= 0]
        exact = data[candidates] @ query  # the re-scoring the engine does from stored vectors
        found = candidates[np.argsort(-exact)[:K]]
        total_ms.append((time.perf_counter() - started) * 1000)
        search_ms.append((searched - started) * 1000)
        hits += len(set(found.tolist()) & set(expected.tolist()))
    return {
        "recall_at_10": round(hits / (K * len(queries)), 4),
        "search_p50_ms": round(float(np.percentile(search_ms, 50)), 3),
        "search_p95_ms": round(float(np.percentile(search_ms, 95)), 3),
        "with_rescoring_p50_ms": round(float(np.percentile(total_ms, 50)), 3),
        "with_rescoring_p95_ms": round(float(np.percentile(total_ms, 95)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe-sweep", action="store_true", help="also try other nprobe values")
    parser.add_argument("--spread", type=float, default=1.5, help="noise around cluster centres (see clustered)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centers = normalize(rng.normal(size=(2000, DIM)))
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        data = clustered(size, centers, rng, args.spread)
        queries = clustered(args.queries, centers, rng, args.spread)
        truth = exact_top(data, queries, K)
        factory = choose_factory(size)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        index = VectorIndex(DIM, factory)
        if index.needs_training:
            lists = int(factory.split(",")[0][3:])
            sample = data[rng.choice(size, min(size, TRAIN_PER_LIST * lists), replace=False)]
            index.train(sample)
        index.add(np.arange(size), data)
        build_s = time.perf_counter() - started
        probes = [index.nprobe] + ([p for p in (8, 16, 32, 64, 128) if p != index.nprobe] if args.nprobe_sweep else [])
        for nprobe in probes if factory.startswith("IVF") else [None]:
            if nprobe is not None:
                index.nprobe = nprobe
            row = {
                "vectors": size,
                "kind": factory,
                "nprobe": nprobe,
                "build_s": round(build_s, 1),
                "index_mb": round(faiss.serialize_index(index.index).nbytes / 2**20, 1),
                "peak_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024),
                **measure(index, data, queries, truth),
            }
            rows.append(row)
            if not args.json:
                print(row, flush=True)
        del index, data
    if args.json:
        print(json.dumps({"threads": faiss.omp_get_max_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
