"""A bounded mixed load on a served catalog: every answer counted, by route.

Client threads send, in turn, an upload search, a similar-tracks query, a radio after a short
history, a path of 10 (fewer in a smaller catalog), a range request on a track's audio (through a
signed URL), `GET /health` and a load of the web page, against `mertsearch serve` on loopback with
a token. Prints, per route, the requests answered, their throughput, p50/p95 latency, and the
503s apart (uploads beyond what the decoders take are answered 503 at once; the goal for the other
5xx is 0).

With no catalog given, one of 8 generated tunes (a tiny model) is built and, during the load,
`mertsearch index` adds 8 tracks and `mertsearch reindex` switches the centering. With
`--catalog DIR`, that catalog is served as it is (nothing writes to it) and searched with `--clip`
(a generated 5 s tune by default).

    .venv/bin/python bench/load.py [--clients 8] [--requests 21] [--catalog DIR [--clip FILE]] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

KINDS = ("search", "similar", "radio", "path", "audio", "health", "page")
TOKEN = "load-test-token"


@dataclass
class Load:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})  # but 503s
    busy: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))  # 503s
    statuses: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # requests that got no answer at all
    errors: list[str] = field(default_factory=list)  # the first few answers >= 400 but 503s, for a look
    seconds: float = 0.0  # the load's wall time

    def summary(self) -> dict:
        def percentile(values: list[float], q: int) -> float | None:
            return round(float(np.percentile(values, q)) * 1000, 1) if values else None

        seconds = max(self.seconds, 1e-9)
        return {
            "requests": len(self.statuses),
            "seconds": round(self.seconds, 1),
            "per_s": round(len(self.statuses) / seconds, 1),
            "busy_503": sum(status == 503 for status in self.statuses),
            "server_errors": sum(status >= 500 and status != 503 for status in self.statuses),
            "other_errors": sum(400 <= status < 500 for status in self.statuses),
            "dropped": len(self.dropped),
            "ms": {
                kind: {
                    "n": len(v),
                    "per_s": round(len(v) / seconds, 2),
                    "p50": percentile(v, 50),
                    "p95": percentile(v, 95),
                    "busy_503": self.busy[kind],
                }
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
    track_ids: list[int],
    during: threading.Thread | None = None,
) -> Load:
    """``clients`` threads sending ``requests`` requests each, the kinds in turn, and more (up to ten
    times as many) while ``during`` is still running; tracks drawn from ``track_ids``."""
    load = Load()
    lock = threading.Lock()

    def one(http: httpx.Client, player: httpx.Client, kind: str, n: int, draw: random.Random) -> httpx.Response:
        track, other = draw.sample(track_ids, 2) if len(track_ids) > 1 else (track_ids[0], track_ids[0])
        if kind == "search":
            return http.post("/search", files={"file": ("clip.wav", clip)}, data={"k": "5"})
        if kind == "similar":
            return http.get(f"/tracks/{track}/similar", params={"k": 5})
        if kind == "radio":
            return http.get("/radio", params={"history": [other, track], "k": 5})
        if kind == "path":
            # Every track of a small catalog at most: a longer path cannot be made.
            return http.get("/path", params={"start": track, "end": other, "count": min(10, len(track_ids))})
        if kind == "audio":
            signed = http.get(f"/tracks/{track}/audio-url")
            if signed.status_code != 200:
                return signed
            # As an <audio> element asks: no Authorization header, the signed URL only.
            return player.get(signed.json()["url"], headers={"Range": f"bytes={n * 100}-{n * 100 + 4095}"})
        if kind == "health":
            return http.get("/health")
        return http.get("/")

    def client(number: int) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        draw = random.Random(number)
        with httpx.Client(base_url=url, headers=auth, timeout=300) as http, httpx.Client(base_url=url) as player:
            for n in range(requests * 10):
                if n >= requests and (during is None or not during.is_alive()):
                    break
                kind = KINDS[(number + n) % len(KINDS)]
                started = time.perf_counter()
                try:
                    response = one(http, player, kind, n, draw)
                except httpx.HTTPError as exc:
                    with lock:
                        load.dropped.append(f"{kind}: {exc!r}")
                    continue
                with lock:
                    load.statuses.append(response.status_code)
                    if response.status_code == 503:  # refused at once: not a latency of the route's work
                        load.busy[kind] += 1
                    else:
                        load.latencies[kind].append(time.perf_counter() - started)
                    if response.status_code >= 400 and response.status_code != 503 and len(load.errors) < 5:
                        load.errors.append(f"{kind} {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
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
    return root / "cat", root / "more", generated_clip(root)


def generated_clip(folder: Path) -> bytes:
    return write_audio(folder / "clip.wav", tone_track(1, 5, SAMPLE_RATE), SAMPLE_RATE).read_bytes()


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


def some_track_ids(url: str, token: str, count: int = 500) -> list[int]:
    """Up to ``count`` track ids: the first page, and one at a random offset in a big catalog."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        first = http.get("/tracks", params={"limit": count}).json()
        ids = [track["track_id"] for track in first["tracks"]]
        if first["total"] > count:
            offset = random.Random(0).randrange(count, first["total"])
            ids += [
                track["track_id"]
                for track in http.get("/tracks", params={"limit": count, "offset": offset}).json()["tracks"]
            ]
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=21, help="per client")
    parser.add_argument("--catalog", type=Path, help="serve this catalog (unchanged) instead of a generated one")
    parser.add_argument("--clip", type=Path, help="the clip uploaded (default: a generated 5 s tune)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.catalog:
            catalog, more = args.catalog, None
            clip = args.clip.read_bytes() if args.clip else generated_clip(Path(folder))
        else:
            catalog, more, clip = make_catalog(Path(folder), tracks=8, more=8)
            clip = args.clip.read_bytes() if args.clip else clip
        port = free_port()
        env = {**os.environ, "MERTSEARCH_TOKEN": TOKEN}
        server = subprocess.Popen(
            [sys.executable, "-m", "mertsearch.cli", "serve", "--catalog", str(catalog), "--port", str(port)], env=env
        )
        url = f"http://127.0.0.1:{port}"
        ran: list = []
        try:
            deadline = time.monotonic() + 600  # a real model loads before the server answers
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            track_ids = some_track_ids(url, TOKEN)
            writing = None
            if more is not None:
                writing = threading.Thread(target=lambda: ran.extend(writers(catalog, more)))
                writing.start()
            load = mixed_load(
                url,
                token=TOKEN,
                clip=clip,
                clients=args.clients,
                requests=args.requests,
                track_ids=track_ids,
                during=writing,
            )
            if writing is not None:
                writing.join()
        finally:
            server.terminate()
            server.wait(30)
    summary = {
        **load.summary(),
        "clients": args.clients,
        "tracks_drawn_from": len(track_ids),
        "writers_ok": None if more is None else all(r.returncode == 0 for r in ran),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"{summary['requests']} requests from {args.clients} clients in {summary['seconds']} s "
        f"({summary['per_s']} per s): {summary['busy_503']} 503 (busy), {summary['server_errors']} other 5xx, "
        f"{summary['dropped']} dropped"
    )
    print(f"  {'route':8s} {'n':>5s} {'per s':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'503':>5s}")
    for kind, figures in summary["ms"].items():
        print(
            f"  {kind:8s} {figures['n']:5d} {figures['per_s']:7.2f} {figures['p50'] or 0:8.1f} "
            f"{figures['p95'] or 0:8.1f} {figures['busy_503']:5d}"
        )
    if summary["writers_ok"] is not None:
        print(f"  index and reindex during the load: {'ok' if summary['writers_ok'] else 'FAILED'}")


if __name__ == "__main__":
    main()
