"""Ingest on Ray against the local executor: same recordings, same model, same run.

Real recordings (by default Debian's warzone2100-music soundtrack, see bench/ingest.py), the
shortest files first until at least --minutes of audio, indexed into two fresh catalogs:
(a) `index` with the local executor (decoder processes + the model in this process);
(b) `index --executor ray` on a local Ray instance with this machine's cores (CPU decode tasks,
    one embedding actor), including Ray's start-up, as a user would run it.
Prints the speed of each (times real time), their ratio, and the minimum cosine between the
two catalogs' track vectors. `--model spectral` (default) is decode-bound, so it shows what Ray's
scheduling costs; `--model mert` uses a full-size randomly initialised MERT-v1-95M (the real
compute). On one machine Ray cannot beat the local executor: the point of it is many machines.

    .venv/bin/python bench/ray_ingest.py --minutes 10 [--model spectral|mert] [--music DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.encoder import MERT_V1_95M  # noqa: E402
from bench.ingest import MUSIC, pick_files  # noqa: E402


def run(executor: str, model: str, files: list[Path], catalog: Path) -> dict:
    from mertsearch import Catalog
    from mertsearch.config import RaySettings
    from mertsearch.storage.store import from_blob

    started = time.perf_counter()
    with Catalog.create(catalog, model=model, **({} if model == "spectral" else {"layer": 7})) as cat:
        if executor == "ray":
            import ray

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        report = cat.index_paths(files, ray=RaySettings() if executor == "ray" else None)
        elapsed = time.perf_counter() - started
        vectors = {str(p): from_blob(cat.store.track_by_path(str(p)).vector).tolist() for p in files}
    return {"elapsed_s": elapsed, "audio_seconds": report.audio_seconds, "device": report.device, "vectors": vectors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", choices=["spectral", "mert"], default="spectral")
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--part", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run(args.part, args.model_dir, args.files, Path(tmp) / "cat")))
        return
    if not args.music.is_dir():
        sys.exit(f"no recordings at {args.music}: apt-get install warzone2100-music, or pass --music DIR")
    from tests.helpers import write_tiny_mert

    files = pick_files(args.music, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        model = "spectral"
        if args.model == "mert":
            model = str(write_tiny_mert(Path(tmp) / "mert-v1-95m-random", overrides=MERT_V1_95M)[0])
        parts = {}
        for part in ("local", "ray"):  # each in its own process, so neither warms the other
            command = [sys.executable, __file__, "--part", part, "--model-dir", model, "--files", *map(str, files)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            parts[part] = json.loads(done.stdout.strip().splitlines()[-1])
    local, ray = parts["local"], parts["ray"]
    cosines = [float(np.dot(local["vectors"][p], ray["vectors"][p])) for p in local["vectors"]]
    result = {
        "model": args.model,
        "files": len(files),
        "audio_minutes": round(local["audio_seconds"] / 60, 2),
        "cores": os.cpu_count(),
        "local_x_realtime": round(local["audio_seconds"] / local["elapsed_s"], 2),
        "ray_x_realtime": round(ray["audio_seconds"] / ray["elapsed_s"], 2),
        "ray_vs_local": round(local["elapsed_s"] / ray["elapsed_s"], 3),
        "min_cosine": round(min(cosines), 6),
        "local_device": local["device"],
        "ray_device": ray["device"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
