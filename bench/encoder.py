"""Embedding cost of one layer: the engine's encoder against the published recipe, same run.

Full-size MERT-v1-95M with random weights (the compute is the real one), 5 s windows at 24 kHz.
(a) recipe: HubertModel with output_hidden_states=True, all 12 layers, one window at a time;
(b) engine: MertEncoder(layer), which runs only the layers up to the chosen one.

    .venv/bin/python bench/encoder.py --layer 7 --seconds 30 [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.mert import MertEncoder  # noqa: E402
from tests.helpers import tone_track, write_tiny_mert  # noqa: E402

MERT_V1_95M = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "conv_dim": [512] * 7,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}
MERT_V1_330M = MERT_V1_95M | {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "do_stable_layer_norm": True,
}


def best_of(repeats: int, action) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per run (multiple of 5)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory, reference = write_tiny_mert(Path(tmp) / "mert-v1-95m-random", overrides=MERT_V1_95M)
        encoder = MertEncoder(resolve_checkpoint(str(directory)), args.layer, batch_size=1)
    windows = np.stack([tone_track(seed, 5.0, 24000, channels=1)[0] for seed in range(int(args.seconds // 5))])

    @torch.inference_mode()
    def recipe() -> np.ndarray:
        out = []
        for window in windows:
            hidden = reference(torch.from_numpy(window[None]), output_hidden_states=True).hidden_states
            out.append(hidden[args.layer].mean(dim=1)[0].numpy())
        return np.stack(out)

    recipe_s, recipe_vectors = best_of(args.repeats, recipe)
    engine_s, engine_vectors = best_of(args.repeats, lambda: encoder.embed_windows(windows)[:, 0])
    cosine = np.sum(recipe_vectors * engine_vectors, axis=1) / (
        np.linalg.norm(recipe_vectors, axis=1) * np.linalg.norm(engine_vectors, axis=1)
    )
    audio = len(windows) * 5.0
    result = {
        "layer": args.layer,
        "audio_seconds": audio,
        "threads": torch.get_num_threads(),
        "recipe_s_per_audio_s": round(recipe_s / audio, 4),
        "engine_s_per_audio_s": round(engine_s / audio, 4),
        "speedup": round(recipe_s / engine_s, 3),
        "min_cosine": float(cosine.min()),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
