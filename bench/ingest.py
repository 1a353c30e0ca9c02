"""Ingest throughput: the published MERT recipe against the engine's `index`, same recordings, same run.

Real recordings (by default the Opus soundtrack of Debian's warzone2100-music package:
`apt-get install warzone2100-music`), the shortest files first until at least --minutes of audio.
Full-size MERT-v1-95M with random weights (the real compute), layer 7.

(a) recipe: per file, torchaudio.load, channel mean, T.Resample to 24 kHz, the feature extractor
    and HubertModel with output_hidden_states=True on one 5 s window at a time, fp32; the track
    vector is the normalised mean of the windows' normalised layer-7 means (windows as the
    engine cuts them, so the two are comparable).
(b) engine: Catalog.index_paths with its defaults (decoder workers, batches across tracks, only
    layers up to 7, precision "auto");
(c) sampled: the same with ``--sample`` seconds of each track (`index --sample`; 0 skips it);
(d) neighbours: every file in --music indexed with --sample twice, in fp32 and in the precision
    "auto" chooses: `top10_overlap` is the mean share of each track's 10 nearest tracks that the
    two catalogs agree on (and its minimum), `auto_min_cosine` the least cosine between a
    track's two vectors (--neighbours 0 skips it);
(e) text: with --text, the engine's run of (b) again making each track's CLaMP 3 vector too
    (`index --text`; full-size random CLaMP 3 towers): `text_cost` is its time over (b)'s.

Each runs in its own process, so peak memory (RSS, workers included) is its own; each loads its
model before its clock starts.

    .venv/bin/python bench/ingest.py --minutes 5 [--sample 30] [--neighbours 1] [--text] [--music DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.encoder import MERT_V1_95M  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402

MUSIC = Path("/usr/share/games/warzone2100/music")
LAYER = 7


def pick_files(music: Path, minutes: float) -> list[Path]:
    from torchcodec.decoders import AudioDecoder

    from mertsearch.indexer.discover import discover_files

    durations = sorted((AudioDecoder(str(p)).metadata.duration_seconds, str(p)) for p in discover_files([music]))
    chosen, total = [], 0.0
    for seconds, path in durations:
        if total >= minutes * 60:
            break
        chosen.append(Path(path))
        total += seconds
    return chosen


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run_recipe(model_dir: Path, files: list[Path]) -> dict:
    import torch
    import torchaudio
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    from mertsearch.audio.windows import cut_windows
    from mertsearch.config import WindowSettings

    config = json.loads((model_dir / "config.json").read_text())
    model = HubertModel(HubertConfig(conv_pos_batch_norm=False, **config)).eval()
    model.load_state_dict(torch.load(model_dir / "reference.pt", weights_only=True))
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir))
    vectors, audio_seconds = {}, 0.0
    started = time.perf_counter()
    for path in files:
        waveform, rate = torchaudio.load(str(path))
        audio = torchaudio.transforms.Resample(rate, 24000)(waveform.mean(dim=0)).numpy()
        audio_seconds += len(audio) / 24000
        means = []
        for _, window in cut_windows(audio, 24000, WindowSettings()):
            inputs = extractor(window, sampling_rate=24000, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**inputs, output_hidden_states=True).hidden_states[LAYER]
            mean = hidden.mean(dim=1)[0].numpy()
            means.append(mean / np.linalg.norm(mean))
        track = np.mean(means, axis=0)
        vectors[str(path)] = (track / np.linalg.norm(track)).tolist()
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "audio_seconds": audio_seconds, "vectors": vectors, "peak_rss_mb": peak_rss_mb()}


def run_engine(
    model_dir: Path,
    files: list[Path],
    catalog: Path,
    sample: float | None = None,
    precision: str = "auto",
    text: Path | None = None,
) -> dict:
    from mertsearch import Catalog
    from mertsearch.storage.store import from_blob

    settings = {"layer": LAYER, "sample": sample, "precision": precision, "text": str(text) if text else False}
    with Catalog.create(catalog, model=str(model_dir), **settings) as cat:
        encoder = cat.encoder  # loaded before the clock starts, as the recipe's model is
        started = time.perf_counter()
        report = cat.index_paths(files)
        elapsed = time.perf_counter() - started
        vectors = {str(p): from_blob(cat.store.track_by_path(str(p)).vector).tolist() for p in files}
        return {
            "elapsed_s": elapsed,
            "audio_seconds": report.audio_seconds,
            "vectors": vectors,
            "peak_rss_mb": peak_rss_mb(),
            "precision": report.precision,
            "precision_report": encoder.precision_report,
            "decoders": report.decoders,
            "batch_size": cat.encoder.batch_size,
            "failed": [f.reason for f in report.failed],
        }


def top10_overlap(reference: dict, other: dict) -> tuple[float, float]:
    """Mean and least share of each track's 10 nearest tracks (by cosine) found in both catalogs."""
    paths = sorted(reference)
    shares = []
    nearest = {}
    for name, vectors in (("reference", reference), ("other", other)):
        matrix = np.array([vectors[p] for p in paths])
        scores = matrix @ matrix.T
        np.fill_diagonal(scores, -np.inf)
        nearest[name] = np.argsort(-scores, axis=1)[:, :10]
    for mine, theirs in zip(nearest["reference"], nearest["other"], strict=True):
        shares.append(len(set(mine) & set(theirs)) / len(mine))
    return float(np.mean(shares)), float(np.min(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds a track for the sampled run (0: none)")
    parser.add_argument("--neighbours", type=int, default=1, help="1: compare fp32 and auto top-10 lists, 0: skip")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--text", action="store_true", help="also index with text search (CLaMP 3), as `index --text`")
    part_names = ["recipe", "engine", "text", "sampled", "fp32-all", "auto-all"]
    parser.add_argument("--part", choices=part_names, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.part == "recipe":
        print(json.dumps(run_recipe(args.model_dir, args.files)))
        return
    if args.part is not None:
        sample = None if args.part in ("engine", "text") else args.sample
        precision = "fp32" if args.part == "fp32-all" else "auto"
        text = args.model_dir.parent / "clamp3" if args.part == "text" else None
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_engine(args.model_dir, args.files, Path(tmp) / "cat", sample, precision, text)))
        return

    if not args.music.is_dir():
        sys.exit(f"no recordings at {args.music}: apt-get install warzone2100-music, or pass --music DIR")
    import torch

    from tests.helpers import write_tiny_mert

    files = pick_files(args.music, args.minutes)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, reference = write_tiny_mert(Path(tmp) / "mert-v1-95m-random", overrides=MERT_V1_95M)
        torch.save(reference.state_dict(), model_dir / "reference.pt")
        parts = {}
        sample = 30.0 if not args.sample else args.sample
        runs = [("recipe", files), ("engine", files)] + ([("sampled", files)] if args.sample else [])
        if args.text:
            from tests.clamp3_checkpoint import make_clamp3_checkpoint

            # Full-size towers (XLM-RoBERTa-base's shape, a small vocabulary) with random weights.
            make_clamp3_checkpoint(
                model_dir.parent / "clamp3", hidden=768, layers=12, text_layers=12, text_heads=12, text_ffn=3072
            )
            runs.insert(2, ("text", files))
        if args.neighbours:
            every = pick_files(args.music, float("inf"))
            runs += [("fp32-all", every), ("auto-all", every)]
        for part, chosen in runs:
            command = [sys.executable, __file__, "--part", part, "--sample", str(sample), "--model-dir"]
            command += [str(model_dir), "--files"]
            run = subprocess.run(command + [str(f) for f in chosen], capture_output=True, text=True, check=True)
            parts[part] = json.loads(run.stdout.strip().splitlines()[-1])
    recipe, engine = parts["recipe"], parts["engine"]
    cosines = [float(np.dot(recipe["vectors"][p], engine["vectors"][p])) for p in recipe["vectors"]]
    result = {
        **cpu_facts(),
        "files": len(files),
        "audio_minutes": round(recipe["audio_seconds"] / 60, 2),
        "threads": torch.get_num_threads(),
        "recipe_x_realtime": round(recipe["audio_seconds"] / recipe["elapsed_s"], 3),
        "engine_x_realtime": round(engine["audio_seconds"] / engine["elapsed_s"], 3),
        "speedup": round(
            recipe["elapsed_s"] / engine["elapsed_s"] * engine["audio_seconds"] / recipe["audio_seconds"], 3
        ),
        "min_cosine": min(cosines),
        "recipe_peak_rss_mb": round(recipe["peak_rss_mb"]),
        "engine_peak_rss_mb": round(engine["peak_rss_mb"]),
        "engine_precision": engine["precision"],
        "runtime": f"PyTorch {torch.__version__}, eager",
        "engine_precision_report": engine["precision_report"],
        "engine_decoders": engine["decoders"],
        "engine_batch_size": engine["batch_size"],
        "engine_failed": engine["failed"],
    }
    if "text" in parts:
        text = parts["text"]
        result["text_x_realtime"] = round(text["audio_seconds"] / text["elapsed_s"], 3)
        # What text search adds to an ingest: the layers past the searched one, the short last
        # windows and CLaMP 3's audio tower.
        result["text_cost"] = round(
            text["elapsed_s"] / engine["elapsed_s"] * engine["audio_seconds"] / text["audio_seconds"], 3
        )
        result["text_peak_rss_mb"] = round(text["peak_rss_mb"])
    if "sampled" in parts:
        sampled = parts["sampled"]
        result["sample_s"] = args.sample
        result["sampled_x_realtime"] = round(sampled["audio_seconds"] / sampled["elapsed_s"], 3)
        result["sampled_speedup"] = round(result["sampled_x_realtime"] / result["recipe_x_realtime"], 3)
    if "auto-all" in parts:
        fp32, auto = parts["fp32-all"]["vectors"], parts["auto-all"]["vectors"]
        mean, least = top10_overlap(fp32, auto)
        result["neighbours_files"] = len(fp32)
        result["neighbours_precision"] = parts["auto-all"]["precision"]
        result["top10_overlap"] = round(mean, 4)
        result["top10_overlap_min"] = round(least, 4)
        result["auto_min_cosine"] = min(float(np.dot(fp32[p], auto[p])) for p in fp32)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
