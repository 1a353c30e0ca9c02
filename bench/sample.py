"""Sampled indexing (`index --sample`) against indexing whole tracks: speed, and how far `similar` moves.

The same real recordings (by default Debian's warzone2100-music Opus soundtrack, the shortest files
first until at least --minutes of audio) are indexed twice in one run: whole, then with
``--sample`` seconds of each track. Prints both wall times and their ratio, and for every track
the overlap of its `similar` top-k in the two catalogs (1.0: the same tracks). The model is
full-size MERT-v1-95M with random weights (the real compute) at layer 7, unless --model names
another (e.g. "spectral", fast enough for the whole soundtrack).

    .venv/bin/python bench/sample.py [--minutes 30] [--sample 30] [--model spectral] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.encoder import MERT_V1_95M  # noqa: E402
from bench.ingest import MUSIC, pick_files  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import write_tiny_mert  # noqa: E402

LAYER = 7


def index(folder: Path, files: list[Path], model: str, sample: float | None) -> tuple[Catalog, float, dict]:
    cat = Catalog.create(folder, model=model, sample=sample, **({} if model == "spectral" else {"layer": LAYER}))
    started = time.perf_counter()
    report = cat.index_paths(files)
    return cat, time.perf_counter() - started, report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--model", default=None, help="default: full-size MERT-v1-95M, random weights")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = pick_files(args.music, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model or str(write_tiny_mert(root / "mert-v1-95m-random", overrides=MERT_V1_95M)[0])
        whole, whole_s, whole_report = index(root / "whole", files, model, None)
        sampled, sampled_s, sampled_report = index(root / "sampled", files, model, args.sample)
        k = min(args.k, len(files) - 1)
        overlaps = []
        for path in files:
            ids = [{r.path for r in cat.similar(cat.track_id(path), k=k)} for cat in (whole, sampled)]
            overlaps.append(len(ids[0] & ids[1]) / k)
        windows = (whole.store.counts()["windows"], sampled.store.counts()["windows"])
        whole.close()
        sampled.close()
    result = {
        "files": len(files),
        "audio_minutes": round(whole_report["audio_seconds"] / 60, 1),
        "model": args.model or "MERT-v1-95M (random weights), layer 7",
        "precision": whole_report["precision"],
        "sample_s": args.sample,
        "whole_s": round(whole_s, 1),
        "sampled_s": round(sampled_s, 1),
        "speedup": round(whole_s / sampled_s, 2),
        "whole_x_realtime": round(whole_report["audio_seconds"] / whole_s, 1),
        "sampled_x_realtime": round(sampled_report["audio_seconds"] / sampled_s, 1),
        "windows": {"whole": windows[0], "sampled": windows[1]},
        f"similar_top{k}_overlap": round(float(np.mean(overlaps)), 3),
        f"similar_top{k}_overlap_min": round(float(np.min(overlaps)), 3),
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{key:>22}: {v}" for key, v in result.items()))


if __name__ == "__main__":
    main()
