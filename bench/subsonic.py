"""The Subsonic pass-through in front of a real Supysonic server (tests/supysonic.py): how long a
sync of the upstream's songs takes, how long getSonicSimilarTracks takes through it, and the
pass-through's memory while it streams a large file.

``--songs`` generated tunes (8 s, tagged, in folders of 20) are indexed with the weight-free
spectral encoder and scanned by Supysonic, with one more raw WAV of ``--stream-mb`` MB that only
Supysonic holds. ``mertsearch serve --subsonic`` then runs as its own process, so its resident
memory (VmRSS, read from /proc every 10 ms) is its alone.

    .venv/bin/python bench/subsonic.py [--songs 300] [--requests 200] [--stream-mb 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import httpx
import mutagen
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch import Catalog  # noqa: E402
from mertsearch.subsonic import PassThrough, SubsonicSettings  # noqa: E402
from tests.helpers import melody_track, write_audio  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.supysonic import PASSWORD, USER, supysonic  # noqa: E402

SR = 44100
AUTH = {"u": USER, "p": PASSWORD, "c": "bench", "v": "1.12.0", "f": "json"}


def make_music(folder: Path, songs: int) -> None:
    for n in range(songs):
        path = write_audio(folder / f"Artist{n // 20}" / f"song{n:04d}.flac", melody_track(n, 8, SR), SR)
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["album"], tagged["title"] = f"Artist{n // 20}", f"Album{n // 20}", f"Song {n}"
        tagged.save()


def make_wav(path: Path, megabytes: float) -> int:
    """A raw 16-bit stereo WAV of about ``megabytes`` MB, written a second at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SR)
        for _ in range(int(megabytes * 1e6 / (SR * 4)) + 1):
            out.writeframes(rng.integers(-8000, 8000, (SR, 2), dtype=np.int16).tobytes())
    return path.stat().st_size


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def time_sync(catalog: Path, upstream: str) -> dict:
    """A sync as the server runs it, timed apart from the first one at start."""
    with Catalog.open(catalog) as cat:
        passthrough = PassThrough(
            SubsonicSettings(url=upstream, user=USER, password=PASSWORD), lambda: cat, threading.Lock()
        )
        async with passthrough.running():
            await passthrough.first_sync.wait()
            started = time.perf_counter()
            listed_songs = sum([len(page) async for page in passthrough.upstream.pages()])
            listed = time.perf_counter()
            await passthrough.sync(full=True)
            both = time.perf_counter() - listed
            return {
                "songs_listed": listed_songs,
                "songs_matched": len(passthrough.songs),
                "list_s": round(listed - started, 3),
                "sync_s": round(both, 3),  # listing again and matching
            }


def latencies(url: str, params: dict, n: int) -> dict:
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(n):
            started = time.perf_counter()
            answer = client.get(url, params=params)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200 and '"ok"' in answer.text, answer.text[:300]
    times.sort()
    return {"median_ms": round(statistics.median(times) * 1000, 2), "p95_ms": round(times[int(0.95 * n)] * 1000, 2)}


def stream_memory(proxy: str, pid: int, song_id: str, expected: bytes) -> dict:
    peak, stop = [rss_mb(pid)], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.01)

    before = rss_mb(pid)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    digest, size = hashlib.sha256(), 0
    started = time.perf_counter()
    with httpx.stream("GET", f"{proxy}/rest/stream", params={**AUTH, "id": song_id}, timeout=120) as answer:
        for chunk in answer.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    return {
        "bytes": size,
        "identical": digest.digest() == expected,
        "rss_before_mb": round(before, 1),
        "rss_peak_during_mb": round(max(peak), 1),
        "rss_after_mb": round(rss_mb(pid), 1),
        "rate_mb_s": round(size / 1e6 / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stream-mb", type=float, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict = {"songs": args.songs}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        started = time.perf_counter()
        make_music(root / "music", args.songs)
        with Catalog.create(root / "cat", model="spectral") as cat:
            cat.index_paths([root / "music"])
        wav_size = make_wav(root / "music" / "Long" / "long.wav", args.stream_mb)
        expected = hashlib.sha256((root / "music" / "Long" / "long.wav").read_bytes()).digest()
        report["prepare_s"] = round(time.perf_counter() - started, 1)
        with supysonic(root / "music", root / "supysonic") as upstream:
            report["sync"] = asyncio.run(time_sync(root / "cat", upstream))
            port = free_port()
            proxy = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-m", "mertsearch.cli", "serve", "--catalog", str(root / "cat")]
            command += ["--port", str(port), "--subsonic", upstream, "--subsonic-user", USER]
            env = {**os.environ, "MERTSEARCH_SUBSONIC_PASSWORD": PASSWORD}
            server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
            try:
                while True:
                    try:  # up, and its first sync done
                        if httpx.get(f"{proxy}/health", timeout=1).json()["subsonic"]["synced"]:
                            break
                    except httpx.TransportError:
                        if server.poll() is not None:
                            raise RuntimeError("mertsearch serve did not start") from None
                    time.sleep(0.2)
                found = httpx.get(f"{upstream}/rest/search3", params={**AUTH, "query": "", "songCount": 500})
                songs = found.json()["subsonic-response"]["searchResult3"]["song"]
                first = next(s["id"] for s in songs if s["title"] == "Song 0")
                long_id = next(s["id"] for s in songs if s.get("path", "").endswith("long.wav"))
                similar = {**AUTH, "id": first, "count": 10}
                report["getSonicSimilarTracks_count10"] = latencies(
                    f"{proxy}/rest/getSonicSimilarTracks", similar, args.requests
                )
                report["ping_through"] = latencies(f"{proxy}/rest/ping", AUTH, args.requests)
                report["ping_direct"] = latencies(f"{upstream}/rest/ping", AUTH, args.requests)
                # The floor: mertsearch's own lightest route, on the same server.
                report["health_of_mertsearch"] = latencies(f"{proxy}/health", {}, args.requests)
                report["stream"] = {
                    "file_mb": round(wav_size / 1e6, 1),
                    **stream_memory(proxy, server.pid, long_id, expected),
                }
            finally:
                server.terminate()
                server.wait(timeout=30)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
