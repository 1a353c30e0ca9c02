"""Window vectors in Milvus (Lite, and a real server) against FAISS IVF-SQ8: load time, search p50/p95,
recall@10, memory.

Synthetic 768-d vectors in 2,000 clusters (bench/index.py's generator, L2-normalised like the
catalog's), held-out queries from the same distribution, ground truth by exact search. Each
backend runs in a child process of its own, so its memory is its own:

- faiss: IVF-SQ8 with ~4*sqrt(n) lists (what choose_factory picks for a large catalog, here at any
  size) and the catalog's default probes, trained on a sample and filled as the catalog does;
  load = train + add;
- milvus: a Milvus Lite collection (int64 primary key, FLOAT_VECTOR) with the same lists and
  probes (IVF_SQ8, nlist, nprobe) or FLAT; load = inserts + index build + load_collection;
- server (``--server``): the same collection on a Milvus standalone server (PyPI's milvus 2.3.5,
  started here as the tests start it, tests/milvus_server.py). Its memory is the server's
  processes' (their peak resident memory summed, VmHWM), apart from the client's.

Search is one query at a time for the 10 nearest, as a single user's search is.

    .venv/bin/python bench/milvus.py [--vectors 1000000] [--queries 200] [--milvus-index IVF_SQ8] [--server] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.index import DIM, K, clustered, exact_top, normalize  # noqa: E402

CLUSTERS = 2000
INSERT_BATCH = 5000


def data(vectors: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = normalize(rng.normal(size=(CLUSTERS, DIM)))
    return clustered(vectors, centers, rng, 0.75), clustered(queries, centers, rng, 0.75)


def memory_mb() -> dict:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {key: round(int(status[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


def ivf_sq8(count: int) -> str:
    """IVF-SQ8 with the lists choose_factory gives a large catalog (~4*sqrt(n)), at any size."""
    lists = min(2 ** round(math.log2(4 * math.sqrt(count))), 65536, count // 39)
    return f"IVF{max(1, lists)},SQ8"


def run_faiss(vectors: np.ndarray, queries: np.ndarray) -> tuple[dict, np.ndarray, dict]:
    from mertsearch.storage.sharded import train_sample_size
    from mertsearch.storage.vector_index import VectorIndex

    started = time.perf_counter()
    index = VectorIndex(DIM, ivf_sq8(len(vectors)))
    if index.needs_training:
        size = min(len(vectors), train_sample_size(index))
        sample = np.random.default_rng(1).choice(len(vectors), size, replace=False)
        index.train(vectors[np.sort(sample)])
    for first in range(0, len(vectors), 100_000):
        index.add(np.arange(first, min(first + 100_000, len(vectors))), vectors[first : first + 100_000])
    loaded = time.perf_counter() - started
    times, found = [], []
    for query in queries:
        began = time.perf_counter()
        _, ids = index.search(query[None], K)
        times.append(time.perf_counter() - began)
        found.append(ids[0])
    return {"kind": index.factory, "nprobe": index.nprobe, "load_s": round(loaded, 2)}, np.array(found), _latency(times)


def run_milvus(vectors: np.ndarray, queries: np.ndarray, kind: str, nlist: int, nprobe: int, url: str | None) -> tuple:
    """Milvus Lite in a temporary file, or the server at ``url``."""
    from pymilvus import DataType, MilvusClient

    folder = tempfile.mkdtemp()
    started = time.perf_counter()
    client = MilvusClient(url or str(Path(folder) / "bench.db"))
    if client.has_collection("windows"):
        client.drop_collection("windows")
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    params = client.prepare_index_params()
    # Milvus Lite reads build parameters only from a "params" key, a server each as a key (see storage/milvus.py).
    build = {"nlist": nlist} if kind.startswith("IVF") else {}
    extra = build if url else ({"params": build} if build else {})
    params.add_index("vector", index_type=kind, metric_type="IP", params=extra)
    client.create_collection("windows", schema=schema, index_params=params)
    for first in range(0, len(vectors), INSERT_BATCH):
        part = vectors[first : first + INSERT_BATCH]
        client.insert("windows", [{"id": first + n, "vector": v.tolist()} for n, v in enumerate(part)])
    client.flush("windows")  # sealed segments get the index; growing ones are scanned whole
    client.load_collection("windows")
    client.search("windows", data=[queries[0].tolist()], limit=K)  # the first search builds what is left
    loaded = time.perf_counter() - started
    search = {"metric_type": "IP", "params": {"nprobe": nprobe}} if kind.startswith("IVF") else {"metric_type": "IP"}
    times, found = [], []
    for query in queries:
        began = time.perf_counter()
        hits = client.search("windows", data=[query.tolist()], limit=K, output_fields=["id"], search_params=search)
        times.append(time.perf_counter() - began)
        found.append([hit["id"] for hit in hits[0]] + [-1] * (K - len(hits[0])))
    info = {"kind": kind, "nlist": nlist, "nprobe": nprobe, "load_s": round(loaded, 2)}
    if url is None:
        info["disk_mb"] = round(sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20, 1)
    return info, np.array(found), _latency(times)


def _latency(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {f"search_p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95)}


def child(backend: str, vectors: int, queries: int, kind: str, url: str | None = None) -> dict:
    data_vectors, query_vectors = data(vectors, queries)
    truth = exact_top(data_vectors, query_vectors, K)
    before = memory_mb()["VmRSS"]
    from mertsearch.storage.vector_index import VectorIndex

    probe = VectorIndex(DIM, ivf_sq8(vectors))  # its lists and default probes, for Milvus too
    if backend == "faiss":
        info, found, latency = run_faiss(data_vectors, query_vectors)
    else:
        info, found, latency = run_milvus(data_vectors, query_vectors, kind, probe.lists, probe.nprobe, url)
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    after = memory_mb()
    return {
        "backend": backend,
        **info,
        **latency,
        "recall_at_10": round(hits / (K * len(query_vectors)), 4),
        "rss_over_data_mb": round(after["VmRSS"] - before, 1),
        "peak_rss_mb": after["VmHWM"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-index", default="IVF_SQ8", help="IVF_SQ8 (same lists as FAISS), FLAT, HNSW...")
    parser.add_argument("--server", action="store_true", help="also a Milvus standalone server (milvus 2.3.5)")
    parser.add_argument("--only", choices=["faiss", "milvus", "server"], action="append", help="these backends only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["faiss", "milvus", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.vectors, args.queries, args.milvus_index, args.url)))
        return
    rows = []
    for backend in args.only or ["faiss", "milvus", *(["server"] if args.server else [])]:
        command = [sys.executable, __file__, "--child", backend, "--vectors", str(args.vectors)]
        command += ["--queries", str(args.queries), "--milvus-index", args.milvus_index]
        if backend != "server":
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            continue
        from tests.milvus_server import milvus_server, peak_memory_mb

        with tempfile.TemporaryDirectory() as work, milvus_server(Path(work)) as url:
            done = subprocess.run([*command, "--url", url], capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["server_peak_rss_mb"] = peak_memory_mb(Path(work))
            stored = Path(work) / "data" / "data"  # its data, beside its binaries, configs and logs
            row["disk_mb"] = round(sum(p.stat().st_size for p in stored.rglob("*") if p.is_file()) / 2**20, 1)
            rows.append(row)
    if args.json:
        print(json.dumps({"vectors": args.vectors, "dim": DIM, "queries": args.queries, "results": rows}, indent=2))
        return
    print(f"{args.vectors} vectors of dim {DIM}, {args.queries} queries, k={K}")
    for row in rows:
        print("  " + ", ".join(f"{key}={value}" for key, value in row.items()))


if __name__ == "__main__":
    main()
