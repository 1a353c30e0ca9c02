"""Audio to stored/searched vectors: the one road shared by ingest and queries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.audio.windows import Window, WindowCutter
from mertsearch.config import WindowSettings
from mertsearch.encoder.pooling import Embedding, pool

if TYPE_CHECKING:
    from mertsearch.encoder.mert import MertEncoder


def assemble(encoder: MertEncoder, starts: np.ndarray, lengths: np.ndarray, means: np.ndarray, total: int) -> Embedding:
    """A track's Embedding from its windows' raw per-layer means (see pooling.pool)."""
    window_vectors, vector, layer_vectors, layer_windows = pool(
        means, capture=encoder.capture, layers=encoder.layers, keep_all=encoder.keep_all
    )
    rate = encoder.sample_rate
    return Embedding(
        vector=vector,
        window_vectors=window_vectors,
        window_starts=starts / rate,
        window_ends=(starts + lengths) / rate,
        duration=total / rate,
        layer_vectors=layer_vectors,
        layer_window_vectors=layer_windows,
    )


def embed_chunks(encoder: MertEncoder, chunks: Iterable[np.ndarray], windows: WindowSettings) -> Embedding:
    """Embed mono samples at the encoder's rate arriving in chunks, ``batch_size`` windows at a time."""
    cutter = WindowCutter(encoder.sample_rate, windows)
    starts, lengths, means, pending = [], [], [], []

    def run(batch: list[Window]) -> None:
        if batch:
            means.append(encoder.embed_windows(np.stack([samples for _, samples in batch])))
            starts.extend(start for start, _ in batch)
            lengths.extend(len(samples) for _, samples in batch)

    for chunk in chunks:
        pending += cutter.feed(chunk)
        while len(pending) >= encoder.batch_size:
            run(pending[: encoder.batch_size])
            del pending[: encoder.batch_size]
    run(pending + cutter.finish())
    return assemble(encoder, np.array(starts), np.array(lengths), np.concatenate(means), cutter.total)
