"""The index rebuild of a synthetic catalog: its time and peak memory, this tree against an earlier
revision in the same run; and filtered searches that allow no track or two.

A store of --tracks tracks of --windows windows of --dim-d vectors (clustered and L2-normalised,
like MERT's) is filled through the real store (SQLite). Then each version rebuilds both indexes with
the automatic kinds (`Indexes.rebuild()`, what `mertsearch rebuild` runs) in a child process of its
own, from an empty index folder: this tree, and --baseline REF (a git revision whose `mertsearch`
package is extracted with `git archive`) when given. Each child reports the rebuild's time, its peak
RSS (VmHWM, as ru_maxrss: the pages of mapped files count there too, such as the shards and the lists
file of a build merged on disk, which are page cache and given back under pressure) and its peak
anonymous memory (RssAnon sampled every 20 ms: the memory the build itself holds). It then times a
tracks-mode and a segments-mode search of one track (the median of --repeats) with no filter, with a
filter that allows no track and one that allows two.

    .venv/bin/python bench/build_memory.py [--tracks 10000] [--windows 50] [--dim 768]
        [--baseline REF] [--shard-size N] [--catalog DIR] [--repeats 5] [--json]

With --catalog the filled store is kept there and reused by a later run (with the same sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = 200


def fill(database: Path, tracks: int, windows: int, dim: int) -> float:
    """Tracks around CLUSTERS centres, each window near its track's point; seconds taken."""
    sys.path.insert(0, str(ROOT))
    from mertsearch.storage.store import MetadataStore
    from tests.helpers import synthetic_track

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    store = MetadataStore(f"sqlite:///{database}")
    started = time.perf_counter()
    for first in range(0, tracks, 200):
        with store.session() as session, session.begin():
            for n in range(first, min(first + 200, tracks)):
                point = centres[rng.integers(CLUSTERS)] + rng.normal(0, 0.6, dim).astype(np.float32)
                vectors = point + rng.normal(0, 0.4, (windows, dim)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                store._put_track(session, synthetic_track(n, vectors, path=f"/music/{n:06d}.flac"))
    store.close()
    return time.perf_counter() - started


def _status_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


class PeakAnon:
    """The peak of RssAnon, sampled every 20 ms while the block runs."""

    def __enter__(self) -> PeakAnon:
        self.peak = _status_kb("RssAnon")
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


def child(root: str, database: str, folder: str, dim: int, shard_size: int | None, repeats: int) -> dict:
    """In a process of its own, with ``root``'s mertsearch: the rebuild, then the searches."""
    sys.path.insert(0, root)
    from mertsearch.search.engine import Query, Rules, rank
    from mertsearch.storage.indexes import Indexes
    from mertsearch.storage.store import MetadataStore, from_blob

    store = MetadataStore(f"sqlite:///{database}")
    before_mb = _status_kb("VmRSS") / 1024
    indexes = Indexes(Path(folder), store, dim=dim, factory="auto", transform=lambda v: v, shard_size=shard_size)
    with PeakAnon() as anon:
        started = time.perf_counter()
        indexes.rebuild()
        rebuild_s = time.perf_counter() - started
    row = {
        "rebuild_s": round(rebuild_s, 1),
        # VmHWM, the process's own ru_maxrss: getrusage's would count the parent's at the fork too.
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024),
        "peak_anon_mb": round(anon.peak / 1024),
        "rss_before_mb": round(before_mb),
        "kinds": {name: getattr(indexes, name).factory for name in ("tracks", "windows")},
        "on_disk": {name: getattr(indexes, name).lists_file is not None for name in ("tracks", "windows")},
    }
    seed = int(store.ids("tracks")[1])
    track = store.tracks_by_id([seed])[seed]
    times, vectors = store.windows_of([seed])[seed]
    query = Query(from_blob(track.vector), vectors, times, clip=False)
    ids = store.ids("tracks")
    filters = {"no filter": None, "filter of no track": ids[:0], "filter of two tracks": ids[[7, len(ids) // 2]]}
    for mode in ("tracks", "segments"):
        for name, allowed in filters.items():
            spent = []
            for _ in range(repeats):
                started = time.perf_counter()
                rank(
                    mode=mode,
                    tracks_index=indexes.tracks,
                    windows_index=indexes.windows,
                    store=store,
                    query=query,
                    k=10,
                    rules=Rules(allowed=allowed, exclude={seed}),
                )
                spent.append(time.perf_counter() - started)
            row[f"{mode}, {name} (ms)"] = round(1000 * statistics.median(spent), 2)
    store.close()
    return row


def run_child(root: Path, database: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="mertsearch-build-", dir=database.parent) as folder:
        command = [sys.executable, __file__, "--child", str(root), str(database), folder]
        command += ["--dim", str(args.dim), "--repeats", str(args.repeats)]
        command += ["--shard-size", str(args.shard_size)] if args.shard_size else []
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def extracted(revision: str, into: Path) -> Path:
    """The ``mertsearch`` package at a git revision, in a folder of its own."""
    archive = into / "baseline.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision, "mertsearch"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "baseline", filter="data")
    return into / "baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--baseline", help="a git revision to compare with (e.g. main), rebuilt in the same run")
    parser.add_argument("--shard-size", type=int, help="as `mertsearch rebuild --shard-size`")
    parser.add_argument("--catalog", type=Path, help="keep the filled store in this folder; reuse it if it is there")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "DATABASE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.dim, args.shard_size, args.repeats)))
        return

    with tempfile.TemporaryDirectory(prefix="mertsearch-build-memory-") as tmp:
        folder = args.catalog or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        database = folder / "catalog.db"
        fill_s = None if database.exists() else round(fill(database, args.tracks, args.windows, args.dim), 1)
        versions = {"this tree": ROOT}
        if args.baseline:
            versions = {args.baseline: extracted(args.baseline, Path(tmp)), **versions}
        rows = {name: run_child(root, database, args) for name, root in versions.items()}
    document = {
        "tracks": args.tracks,
        "windows": args.tracks * args.windows,
        "dim": args.dim,
        "shard_size": args.shard_size,
        "fill_s": fill_s,
        "rows": rows,
    }
    if args.baseline:
        base, new = rows[args.baseline], rows["this tree"]
        document["this tree over baseline"] = {
            key: round(new[key] / base[key], 2) if base[key] else None
            for key in new
            if isinstance(new[key], (int, float)) and key != "rss_before_mb"
        }
    if args.json:
        print(json.dumps(document))
        return
    print(f"{args.tracks} tracks x {args.windows} windows at {args.dim} dims, filled in {fill_s} s")
    for name, row in rows.items():
        print(f"{name}:")
        for key, value in row.items():
            print(f"  {key:40} {value}")
    if args.baseline:
        print("this tree over baseline:")
        for key, value in document["this tree over baseline"].items():
            print(f"  {key:40} x{value}")


if __name__ == "__main__":
    main()
