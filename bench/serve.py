"""Latency and throughput of POST /search with a 10 s clip, at 1 and 4 concurrent clients.

Starts `mertsearch serve` in its own process on loopback over a generated catalog indexed with
full-size MERT-v1-95M (random weights: the real compute), then sends a bounded number of
requests from client threads. Prints p50/p95 latency and requests per second for each level.

    .venv/bin/python bench/serve.py [--tracks 20] [--requests 12] [--small] [--json]
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

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import DISCERNING, melody_track, write_audio, write_tiny_mert  # noqa: E402
from tests.servers import free_port  # noqa: E402

SR = 44100


def level(url: str, clip: bytes, clients: int, requests: int) -> dict:
    latencies: list[float] = []
    failures = []

    def worker(count: int) -> None:
        with httpx.Client(timeout=300) as client:
            for _ in range(count):
                started = time.perf_counter()
                response = client.post(f"{url}/search", files={"file": ("clip.flac", clip)}, data={"k": "10"})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(response.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(requests // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "failed": len(failures),
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "requests_per_s": round(len(latencies) / wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--small", action="store_true", help="a small random model instead of full-size MERT")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, _ = write_tiny_mert(root / "model", overrides=DISCERNING if args.small else MERT_V1_95M)
        for n in range(args.tracks):
            write_audio(root / "music" / f"{n:03d}.flac", melody_track(500 + n, 30, SR), SR)
        with Catalog.create(root / "cat", model=str(model), layer=2 if args.small else 7) as cat:
            cat.index_paths([root / "music"])
        clip = write_audio(root / "clip.flac", melody_track(505, 30, SR)[:, 7 * SR : 17 * SR], SR).read_bytes()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mertsearch.cli", "serve", "--catalog", str(root / "cat"), "--port", str(port)],
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            level(url, clip, 1, 2)  # warm up
            rows = [level(url, clip, clients, args.requests) for clients in (1, 4)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {"model": "small random" if args.small else "MERT-v1-95M random", "clip_s": 10, "rows": rows}
    if args.json:
        print(json.dumps(result))
    else:
        for row in rows:
            print(result["model"], row)


if __name__ == "__main__":
    main()
