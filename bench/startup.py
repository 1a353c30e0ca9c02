"""Wall time of one `mertsearch search` call on full-size MERT-v1-95M (random weights), cold cache vs warm.

Cold: an empty MERTSEARCH_CACHE_DIR per call, so the call hashes the weights (380 MB) and, with
--precision auto on bf16 hardware, times bf16 against fp32, as every call did before the cache.
Warm: a cache that an earlier call filled, as a user's later calls find it. The weights file is in
the OS page cache in both (a first call after a reboot would read it from disk too).

    .venv/bin/python bench/startup.py [--runs 3] [--precision auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import tone_track, write_audio, write_tiny_mert  # noqa: E402

SR = 44100


def timed_search(root: Path, cache: Path, precision: str) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU time moves less than wall time on a busy machine)."""
    command = [sys.executable, "-m", "mertsearch.cli", "search", str(root / "clip.wav"), "--catalog"]
    command += [str(root / "cat"), "--model", str(root / "model"), "--precision", precision]
    env = {**os.environ, "MERTSEARCH_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MERTSEARCH_CACHE_DIR"] = str(root / "setup")  # this run's weights are not the user's
        write_tiny_mert(root / "model", overrides=MERT_V1_95M)
        for seed in range(2):
            write_audio(root / "music" / f"{seed}.wav", tone_track(seed, 10, SR), SR)
        write_audio(root / "clip.wav", tone_track(1, 10, SR)[:, 2 * SR : 8 * SR], SR)
        with Catalog.create(root / "cat", model=str(root / "model"), layer=7, precision="fp32") as cat:
            cat.index_paths([root / "music"], decoders=0)
        timed_search(root, root / "warm", args.precision)  # fills the warm cache
        # Alternated, so that a change in the machine's load falls on both alike.
        cold, warm = [], []
        for run in range(args.runs):
            cold.append(timed_search(root, root / f"cold-{run}", args.precision))
            warm.append(timed_search(root, root / "warm", args.precision))
    result = {"precision": args.precision, "runs": args.runs}
    for name, runs in (("cold", cold), ("warm", warm)):
        result[f"{name}_wall_s"] = [round(wall, 2) for wall, _ in runs]
        result[f"{name}_cpu_s"] = [round(cpu, 2) for _, cpu in runs]
    for what, column in (("wall", 0), ("cpu", 1)):
        best = {name: min(run[column] for run in runs) for name, runs in (("cold", cold), ("warm", warm))}
        result[f"best_{what}_warm_over_cold"] = round(best["warm"] / best["cold"], 3)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>26}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
