"""Audio samples to stored/searched vectors: the one road shared by ingest and queries."""

from __future__ import annotations

import numpy as np

from mertsearch.audio.windows import plan_windows
from mertsearch.config import WindowSettings
from mertsearch.encoder.mert import MertEncoder
from mertsearch.encoder.pooling import Embedding, pool

# Windows stacked per call, to bound memory on long tracks.
_CHUNK_WINDOWS = 32


def embed_samples(encoder: MertEncoder, samples: np.ndarray, windows: WindowSettings) -> Embedding:
    """Window mono samples at the encoder's rate, embed each window and pool them."""
    plan = plan_windows(
        len(samples),
        encoder.sample_rate,
        window_s=windows.window_s,
        hop_s=windows.hop_s,
        min_tail_s=windows.min_tail_s,
        min_duration_s=windows.min_duration_s,
    )
    means = np.concatenate(
        [
            encoder.embed_windows(plan.stack(samples, range(first, min(first + _CHUNK_WINDOWS, len(plan)))))
            for first in range(0, len(plan), _CHUNK_WINDOWS)
        ]
    )
    window_vectors, vector, layer_vectors, layer_windows = pool(
        means, capture=encoder.capture, layers=encoder.layers, keep_all=encoder.keep_all
    )
    return Embedding(
        vector=vector,
        window_vectors=window_vectors,
        window_starts=plan.start_seconds(),
        window_ends=plan.end_seconds(),
        duration=len(samples) / encoder.sample_rate,
        layer_vectors=layer_vectors,
        layer_window_vectors=layer_windows,
    )
