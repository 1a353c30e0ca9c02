"""A bounded mixed load on a served catalog while it is indexed and reindexed: every answer counted.

Client threads send, in turn, an upload search, a similar-tracks query, a range request on a
track's audio (through a signed URL) and a load of the web page, against `mertsearch serve` on
loopback with a token, while `mertsearch index` adds tracks and `mertsearch reindex` switches the
centering. Prints requests, p50/p95 latency per kind, and the count of 5xx answers (the goal: 0).

    .venv/bin/python bench/load.py [--clients 4] [--requests 24] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import SAMPLE_RATE, tone_track, write_audio, write_tiny_mert  # noqa: E402
from tests.servers import free_port  # noqa: E402

KINDS = ("search", "similar", "audio", "page")
TOKEN = "load-test-token"


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    statuses: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # requests that got no answer at all

    def summary(self) -> dict:
        def percentile(values: list[float], q: int) -> float | None:
            return round(float(np.percentile(values, q)) * 1000, 1) if values else None

        return {
            "requests": len(self.statuses),
            "server_errors": sum(status >= 500 for status in self.statuses),
            "other_errors": sum(400 <= status < 500 for status in self.statuses),
            "dropped": len(self.dropped),
            "ms": {
                kind: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                for kind, v in self.latencies.items()
            },
        }


def mixed_load(
    url: str,
    *,
    token: str,
    clip: bytes,
    clients: int,
    requests: int,
    tracks: int,
    during: threading.Thread | None = None,
) -> Load:
    """``clients`` threads sending ``requests`` requests each, the kinds in turn, and more (up to ten
    times as many) while ``during`` is still running."""
    load = Load()
    lock = threading.Lock()

    def one(http: httpx.Client, player: httpx.Client, kind: int, n: int) -> httpx.Response:
        track = 1 + n % tracks
        if kind == 0:
            return http.post("/search", files={"file": ("clip.wav", clip)}, data={"k": "5"})
        if kind == 1:
            return http.get(f"/tracks/{track}/similar", params={"k": 5})
        if kind == 2:
            signed = http.get(f"/tracks/{track}/audio-url")
            if signed.status_code != 200:
                return signed
            # As an <audio> element asks: no Authorization header, the signed URL only.
            return player.get(signed.json()["url"], headers={"Range": f"bytes={n * 100}-{n * 100 + 4095}"})
        return http.get("/")

    def client(number: int) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=auth, timeout=120) as http, httpx.Client(base_url=url) as player:
            for n in range(requests * 10):
                if n >= requests and (during is None or not during.is_alive()):
                    break
                kind = (number + n) % len(KINDS)
                started = time.perf_counter()
                try:
                    response = one(http, player, kind, n)
                except httpx.HTTPError as exc:
                    with lock:
                        load.dropped.append(f"{KINDS[kind]}: {exc!r}")
                    continue
                with lock:
                    load.latencies[KINDS[kind]].append(time.perf_counter() - started)
                    load.statuses.append(response.status_code)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load


def make_catalog(root: Path, *, tracks: int, more: int) -> tuple[Path, Path, bytes]:
    """A catalog of ``tracks`` generated tunes (a tiny model), a folder of ``more`` to index during
    the load, and a clip to search with."""
    from mertsearch import Catalog

    model, _ = write_tiny_mert(root / "model")
    for n in range(tracks):
        write_audio(root / "music" / f"{n:02d}.flac", tone_track(n, 10, SAMPLE_RATE), SAMPLE_RATE)
    for n in range(more):
        write_audio(root / "more" / f"{n:02d}.flac", tone_track(100 + n, 10, SAMPLE_RATE), SAMPLE_RATE)
    with Catalog.create(root / "cat", model=str(model), layer=3) as cat:
        cat.index_paths([root / "music"], decoders=0)
    clip = write_audio(root / "clip.wav", tone_track(1, 5, SAMPLE_RATE), SAMPLE_RATE)
    return root / "cat", root / "more", clip.read_bytes()


def writers(catalog: Path, more: Path) -> list[subprocess.CompletedProcess]:
    """An index of new tracks, then a reindex (centering), each in its own process, as a user runs them."""
    cli = [sys.executable, "-m", "mertsearch.cli"]
    ran = [subprocess.run([*cli, "index", str(more), "--catalog", str(catalog)], capture_output=True, text=True)]
    ran.append(
        subprocess.run(
            [*cli, "reindex", "--catalog", str(catalog), "--transform", "center", "--wait", "60"],
            capture_output=True,
            text=True,
        )
    )
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24, help="per client")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        catalog, more, clip = make_catalog(Path(folder), tracks=8, more=8)
        port = free_port()
        env = {**os.environ, "MERTSEARCH_TOKEN": TOKEN}
        server = subprocess.Popen(
            [sys.executable, "-m", "mertsearch.cli", "serve", "--catalog", str(catalog), "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            ran: list = []
            writing = threading.Thread(target=lambda: ran.extend(writers(catalog, more)))
            writing.start()
            load = mixed_load(
                url, token=TOKEN, clip=clip, clients=args.clients, requests=args.requests, tracks=8, during=writing
            )
            writing.join()
        finally:
            server.terminate()
            server.wait(30)
    summary = {**load.summary(), "writers_ok": all(r.returncode == 0 for r in ran)}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{summary['requests']} requests, {summary['server_errors']} 5xx, {summary['dropped']} dropped")
    for kind, figures in summary["ms"].items():
        print(f"  {kind:8s} n={figures['n']:3d}  p50 {figures['p50']} ms  p95 {figures['p95']} ms")
    print(f"  index and reindex during the load: {'ok' if summary['writers_ok'] else 'FAILED'}")


if __name__ == "__main__":
    main()
