"""Audio to stored/searched vectors: the one road shared by ingest and queries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.audio.windows import ProbeCutter, Window, WindowCutter
from mertsearch.config import WindowSettings
from mertsearch.encoder.pooling import Embedding, Probes, pool
from mertsearch.encoder.text_features import split_text_windows

if TYPE_CHECKING:
    from mertsearch.encoder.mert import MertEncoder


def assemble(encoder: MertEncoder, starts: np.ndarray, lengths: np.ndarray, means: np.ndarray, total: int) -> Embedding:
    """A track's Embedding from its windows' raw per-layer means (see pooling.pool); with the
    encoder's text tower, its text vector too (see encoder.text_features)."""
    text_vector = None
    if (text := getattr(encoder, "text", None)) is not None:
        starts, lengths, means, features = split_text_windows(encoder.sample_rate, starts, lengths, means)
        text_vector = text.audio_vector(features)
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
        text_vector=text_vector,
    )


def embed_chunks(
    encoder: MertEncoder, chunks: Iterable[np.ndarray], windows: WindowSettings, *, probe: bool = False
) -> Embedding:
    """Embed mono samples at the encoder's rate arriving in chunks, ``batch_size`` windows at a time.

    ``probe``: also embed the clip's probe window (see audio.windows.ProbeCutter), last, into the
    embedding's ``probes``.
    """
    cutter = WindowCutter(encoder.sample_rate, windows)
    prober = ProbeCutter(encoder.sample_rate, windows, frame=getattr(encoder, "frame_samples", 1)) if probe else None
    starts, lengths, means, pending = [], [], [], []

    def run(batch: list[Window]) -> None:
        if batch:
            means.append(encoder.embed_windows(np.stack([samples for _, samples in batch])))
            starts.extend(start for start, _ in batch)
            lengths.extend(len(samples) for _, samples in batch)

    for chunk in chunks:
        pending += cutter.feed(chunk)
        if prober is not None:
            prober.feed(chunk)
        while len(pending) >= encoder.batch_size:
            run(pending[: encoder.batch_size])
            del pending[: encoder.batch_size]
    pending += cutter.finish()
    extra = [] if prober is None else prober.finish(starts + [start for start, _ in pending])
    run(pending)
    run(extra)  # alone, so the clip's own windows are computed exactly as without it
    regular = len(starts) - len(extra)
    means = np.concatenate(means)
    starts, lengths = np.array(starts), np.array(lengths)
    embedding = assemble(encoder, starts[:regular], lengths[:regular], means[:regular], cutter.total)
    if not extra:
        return embedding
    vectors, _, _, layer_vectors = pool(
        means[regular:], capture=encoder.capture, layers=encoder.layers, keep_all=encoder.keep_all
    )
    rate = encoder.sample_rate
    probes = Probes(vectors, starts[regular:] / rate, (starts[regular:] + lengths[regular:]) / rate, layer_vectors)
    return replace(embedding, probes=probes)
