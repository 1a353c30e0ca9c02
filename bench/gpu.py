"""Throughput of MERT-v1-95M and -330M on a GPU: model only, and end-to-end `index`.

Model only: batches of 5 s windows (all layers, random weights: the real compute) in the chosen
precision; audio-hours per hour, and the fraction of the card's arithmetic limit at about 22
(95M) and 57 (330M) GFLOP per audio second. Decoding only: the decoder workers alone on the
same files (the ceiling for end to end). End to end: the engine's `index` with its defaults
(layer 7, decoder workers, batches of 32) in the chosen precision, over generated 60 s FLAC
files. `--dry-run` shrinks everything so the script can be checked on a CPU.

    .venv/bin/python bench/gpu.py --model 95m [--dtype bf16] [--batch 64] [--seconds 600] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M, MERT_V1_330M  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.config import WindowSettings  # noqa: E402
from mertsearch.encoder.checkpoint import resolve_checkpoint  # noqa: E402
from mertsearch.encoder.mert import MertEncoder  # noqa: E402
from mertsearch.indexer.discover import discover_files  # noqa: E402
from mertsearch.indexer.reader import read_track  # noqa: E402
from mertsearch.indexer.workers import Workers, default_workers  # noqa: E402
from tests.helpers import melody_track, write_audio, write_tiny_mert  # noqa: E402

SIZES = {"95m": (MERT_V1_95M, 22.0), "330m": (MERT_V1_330M, 57.0)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_only(encoder: MertEncoder, dtype: torch.dtype, batch: int, seconds: float) -> float:
    """Audio seconds embedded per wall second."""
    model = encoder.model.to(dtype)
    windows = torch.randn(batch, 5 * encoder.sample_rate, device=encoder.device, dtype=dtype) * 0.1
    steps = max(1, int(seconds // (5 * batch)))
    with torch.inference_mode():
        model(windows)  # warm up (kernels, allocator)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            model(windows).last_hidden_state.float().mean(dim=1).cpu()
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
    return steps * batch * 5.0 / (time.perf_counter() - started)


def make_music(root: Path, minutes: float) -> Path:
    """Minutes of 60 s FLAC files: 20 distinct tunes, copied as often as needed (copying is fast)."""
    music = root / "music"
    count = max(1, int(minutes))
    distinct = [write_audio(music / f"{n:05d}.flac", melody_track(n, 60, 44100), 44100) for n in range(min(20, count))]
    for n in range(len(distinct), count):
        shutil.copyfile(distinct[n % len(distinct)], music / f"{n:05d}.flac")
    return music


def decode_only(music: Path, sample_rate: int) -> float:
    """Audio seconds per wall second of the decoder workers alone (hash, decode, resample, windows)."""
    workers_count = default_workers()
    files = [str(p) for p in discover_files([music])]
    read = functools.partial(read_track, sample_rate=sample_rate, windows=WindowSettings())
    samples = 0
    started = time.perf_counter()
    with Workers(read, count=workers_count, timeout_s=600) as workers:
        pending = iter(files)
        busy = 0
        while True:
            for slot in workers.idle():
                path = next(pending, None)
                if path is None:
                    break
                workers.start(slot, path, None)
                busy += 1
            if not busy:
                break
            for _, message in workers.poll(1.0):
                if message[0] == "done":
                    samples += message[2]
                if message[0] in ("done", "failed"):
                    busy -= 1
    return samples / sample_rate / (time.perf_counter() - started)


def end_to_end(model_dir: Path, root: Path, music: Path, device: str, precision: str) -> dict:
    with Catalog.create(root / "cat", model=str(model_dir), layer=7, device=device, precision=precision) as cat:
        report = cat.index_paths([music])
    return {
        "end_to_end_audio_hours_per_hour": round(report.audio_seconds / report.elapsed, 1),
        "end_to_end_precision": report.precision,
        "decoders": report.decoders,
        "failed": len(report.failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SIZES), default="95m")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1800.0, help="audio seconds for the model-only run")
    parser.add_argument("--minutes", type=float, default=600.0, help="audio minutes for the end-to-end run")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 limit (H100 SXM: 989)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any device, to check the script")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dry_run:
        args.batch, args.seconds, args.minutes, args.dtype = 1, 5.0, 2.0, "fp32" if device == "cpu" else args.dtype
    config, gflop = SIZES[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, _ = write_tiny_mert(root / "model", overrides=config)
        encoder = MertEncoder(resolve_checkpoint(str(model_dir)), config["num_hidden_layers"], device=device)
        speed = model_only(encoder, DTYPES[args.dtype], args.batch, args.seconds)
        del encoder
        music = make_music(root, args.minutes)
        decoding = decode_only(music, 24000)
        pipeline = end_to_end(model_dir, root, music, device, args.dtype)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": args.model,
        "dtype": args.dtype,
        "batch": args.batch,
        "model_only_audio_hours_per_hour": round(speed, 1),
        "arithmetic_fraction": round(speed * gflop / (args.peak_tflops * 1000), 4),
        "decode_only_audio_hours_per_hour": round(decoding, 1),
        **pipeline,
        "dry_run": args.dry_run,
    }
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
