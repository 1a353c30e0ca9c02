"""An inverted-file index built in one go (in memory, as before) against built in shards merged on disk.

Synthetic 768-d vectors in 2,000 clusters (L2-normalised, like the catalog's) are written to a file,
which stands in for the store: both builds stream them in batches of 50,000, train on the same
number of sampled vectors and add everything. Each build runs in its own process, so peak memory is
its own. Then both are searched (the merged one memory-mapped, as `search` opens it) with held-out
queries: latency of FAISS alone and recall@10 against exact search.

    .venv/bin/python bench/shards.py [--vectors 1000000] [--factory IVF1024,SQ8] [--shard-size 200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.index import DIM, K, clustered, exact_top, normalize  # noqa: E402
from mertsearch.storage.sharded import build_in_shards, train_sample_size  # noqa: E402
from mertsearch.storage.vector_index import VectorIndex  # noqa: E402

BATCH = 50_000


def batches(path: Path, count: int):
    """(ids, vectors) read from the file into fresh memory, batch by batch, like the store yields them."""
    with open(path, "rb") as handle:
        for first in range(0, count, BATCH):
            n = min(BATCH, count - first)
            yield np.arange(first, first + n, dtype=np.int64), np.fromfile(handle, np.float32, n * DIM).reshape(n, DIM)


def sample(path: Path, count: int, size: int) -> np.ndarray:
    """Random rows, read one by one (a memory map would count every page it touched, most of the
    file, in the build's peak RSS, as the store's own sampling does not)."""
    rows = np.sort(np.random.default_rng(1).choice(count, min(size, count), replace=False))
    out = np.empty((len(rows), DIM), np.float32)
    with open(path, "rb") as handle:
        for n, row in enumerate(rows):
            handle.seek(int(row) * DIM * 4)
            out[n] = np.fromfile(handle, np.float32, DIM)
    return out


def _status_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


class PeakMemory:
    """Peak anonymous memory (RssAnon, sampled every 20 ms) while the block runs: the memory a
    build needs. Mapped files (the shards being merged, the lists file) count in RSS too but are
    the page cache's, given back under pressure, so VmHWM would overstate the sharded build."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _status_kb("RssAnon"))

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb("RssAnon"))

    @property
    def growth_mb(self) -> int:
        return round((self.peak - self.start) / 1024)


def build(mode: str, path: Path, count: int, factory: str, shard_size: int, out: Path) -> dict:
    memory = PeakMemory().__enter__()
    started = time.perf_counter()
    index = VectorIndex(DIM, factory)
    if mode == "sharded":
        index = build_in_shards(
            index,
            directory=out,
            name="windows",
            sample=lambda size: sample(path, count, size),
            batches=batches(path, count),
            transform=lambda v: v,
            shard_size=shard_size,
        )
    else:
        index.train(sample(path, count, train_sample_size(index)))
        for ids, vectors in batches(path, count):
            index.add(ids, vectors)
    index.save(out, 1, "windows")
    memory.__exit__()
    return {
        "mode": mode,
        "build_s": round(time.perf_counter() - started, 1),
        "peak_anon_mb": round(memory.peak / 1024),
        "peak_anon_growth_mb": memory.growth_mb,
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024),
    }


def search(out: Path, queries: np.ndarray, truth: np.ndarray, nprobe: int | None) -> dict:
    memory = PeakMemory().__enter__()
    started = time.perf_counter()
    index = VectorIndex.load(out, 1, DIM, "windows", mmap=True)
    open_ms = (time.perf_counter() - started) * 1000
    if nprobe:
        index.nprobe = nprobe
    latencies, hits = [], 0
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        _, ids = index.search(query[None], K)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += len(set(ids[0].tolist()) & set(expected.tolist()))
    files = [p for p in out.iterdir() if p.is_file()]
    return {
        "open_ms": round(open_ms, 1),
        "nprobe": index.nprobe,
        "recall_at_10": round(hits / (K * len(queries)), 4),
        "search_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "search_p95_ms": round(float(np.percentile(latencies, 95)), 3),
        "files_mb": round(sum(p.stat().st_size for p in files) / 2**20),
        "search_peak_anon_growth_mb": (memory.__exit__(), memory.growth_mb)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--factory", default="IVF1024,SQ8")
    parser.add_argument("--shard-size", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, default=None, help="default: the engine's default_nprobe")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, data, out = args.child
        result = build(mode, Path(data), args.vectors, args.factory, args.shard_size, Path(out))
        queries = np.load(Path(data).with_suffix(".queries.npy"))
        truth = np.load(Path(data).with_suffix(".truth.npy"))
        print(json.dumps({**result, **search(Path(out), queries, truth, args.nprobe)}))
        return

    with tempfile.TemporaryDirectory(prefix="mertsearch-shards-") as folder:
        root = Path(folder)
        data = root / "vectors.f32"
        rng = np.random.default_rng(0)
        centers = normalize(rng.normal(size=(2000, DIM)))
        started = time.perf_counter()
        with open(data, "wb") as handle:
            for first in range(0, args.vectors, 100_000):
                clustered(min(100_000, args.vectors - first), centers, rng, 1.5).tofile(handle)
        queries = clustered(args.queries, centers, rng, 1.5)
        truth = exact_top(np.memmap(data, np.float32, "r", shape=(args.vectors, DIM)), queries, K)
        np.save(data.with_suffix(".queries.npy"), queries)
        np.save(data.with_suffix(".truth.npy"), truth)
        prepared_s = time.perf_counter() - started
        rows = []
        for mode in ("one-go", "sharded"):
            out = root / mode
            out.mkdir()
            child = [sys.executable, __file__, "--vectors", str(args.vectors), "--factory", args.factory]
            child += ["--shard-size", str(args.shard_size), "--queries", str(args.queries)]
            child += ["--nprobe", str(args.nprobe)] if args.nprobe else []
            done = subprocess.run([*child, "--child", mode, str(data), str(out)], capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        base, sharded = rows
        summary = {
            "vectors": args.vectors,
            "factory": args.factory,
            "shard_size": args.shard_size,
            "data_prepared_s": round(prepared_s, 1),
            "rows": rows,
            "sharded_over_one_go": {
                key: round(sharded[key] / base[key], 2) if base[key] else None
                for key in ("build_s", "peak_anon_growth_mb", "search_p50_ms", "recall_at_10")
            },
        }
        if args.json:
            print(json.dumps(summary))
        else:
            for row in rows:
                print(row)
            print({k: v for k, v in summary.items() if k != "rows"})


if __name__ == "__main__":
    main()
