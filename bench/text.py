"""Text search latency: `Catalog.search_text` on a catalog of --tracks synthetic tracks.

Full-size CLaMP 3 towers with random weights (XLM-RoBERTa-base's 12 x 768 text tower, the 12 x 768
audio tower: the real compute; a small tokenizer, whose vocabulary costs nothing per query), text
vectors drawn in 200 clusters, stored through the store's own put_track. Reports p50/p95 of a
query's wall time (text tower, index, rows), of the text tower alone, and the text index's
first build (read from the database), with and without a filter and a per-artist cap.

    .venv/bin/python bench/text.py --tracks 10000 [--queries 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = [
    "slow sad piano with rain",
    "energetic 80s synth-pop",
    "a calm acoustic guitar at night",
    "heavy drums and distorted bass",
    "musique douce pour dormir",
    "энергичная танцевальная музыка",
    "静かなピアノの曲",
    "jazz trio with brushes and upright bass",
]


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from bench.encoder import MERT_V1_95M
    from bench.machine import cpu_facts
    from mertsearch import Catalog
    from mertsearch.search.options import SearchOptions
    from tests.clamp3_checkpoint import make_clamp3_checkpoint
    from tests.helpers import synthetic_track, write_tiny_mert

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, _ = write_tiny_mert(root / "model", overrides=MERT_V1_95M)  # never run: its shape is checked
        clamp = make_clamp3_checkpoint(
            root / "clamp", hidden=768, layers=12, text_layers=12, text_heads=12, text_ffn=3072
        )
        started = time.perf_counter()
        with Catalog.create(root / "cat", model=str(model), text=str(clamp)) as cat:
            dim = cat.manifest.text.dim
            centres = rng.standard_normal((200, dim)).astype(np.float32)
            windows = rng.standard_normal((2, cat.manifest.encoder.dim)).astype(np.float32)
            windows /= np.linalg.norm(windows, axis=1, keepdims=True)
            with cat.store.session() as session, session.begin():
                for n in range(args.tracks):
                    text = centres[n % 200] + 0.5 * rng.standard_normal(dim).astype(np.float32)
                    record = synthetic_track(n, windows, tags={"artist": f"Artist {n % 500}"})
                    record = replace(record, text_vector=(text / np.linalg.norm(text)).astype(np.float32))
                    cat.store._put_track(session, record)
        fill_s = time.perf_counter() - started

        with Catalog.open(root / "cat") as cat:
            model = cat.text_model  # loaded before the clocks start
            started = time.perf_counter()
            cat.text_index.current()
            build_s = time.perf_counter() - started
            plain = SearchOptions(k=10)
            capped = SearchOptions.parse(["artist=Artist 7", "artist=Artist 8"], k=10, per_artist=1)
            figures: dict[str, list[float]] = {"text tower": [], "query": [], "query, filter and cap": []}
            cat.search_text(WORDS[0], plain)  # warm-up
            for n in range(args.queries):
                words = WORDS[n % len(WORDS)]
                started = time.perf_counter()
                model.text_vectors([words])
                figures["text tower"].append(time.perf_counter() - started)
                started = time.perf_counter()
                cat.search_text(words, plain)
                figures["query"].append(time.perf_counter() - started)
                started = time.perf_counter()
                cat.search_text(words, capped)
                figures["query, filter and cap"].append(time.perf_counter() - started)
            kind = cat.text_index.current().factory

    import torch

    result = {
        **cpu_facts(),
        "threads": torch.get_num_threads(),
        "tracks": args.tracks,
        "index": kind,
        "fill_s": round(fill_s, 1),
        "first_build_s": round(build_s, 3),
        **{f"{name} p50 ms": percentile(values, 50) for name, values in figures.items()},
        **{f"{name} p95 ms": percentile(values, 95) for name, values in figures.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
