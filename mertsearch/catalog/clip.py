"""Vectors of a clip without a catalog: the model and windows a user names, as a catalog would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mertsearch.catalog.layout import one_of
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.registry import DEFAULT_MODEL
from mertsearch.encoder.runtime import default_batch_size, default_device
from mertsearch.settings import LayersArg, resolve_layers, window_settings

if TYPE_CHECKING:
    from mertsearch.audio.decode import AudioInput
    from mertsearch.encoder.pooling import Embedding


def embed(
    source: AudioInput,
    *,
    model: str = DEFAULT_MODEL,
    layer: int | None = None,
    layers: LayersArg = None,
    revision: str | None = None,
    hop: float | None = None,
    start: float | None = None,
    end: float | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> Embedding:
    """Vectors of one clip without a catalog: the pooled, L2-normalised vector and the window vectors."""
    from mertsearch.audio.decode import stream_audio
    from mertsearch.encoder.checkpoint import default_layer
    from mertsearch.encoder.embed import embed_chunks
    from mertsearch.encoder.mert import open_encoder

    layers = one_of(layer, layers)
    checkpoint = resolve_checkpoint(model, revision=revision)
    chosen = resolve_layers(default_layer(checkpoint) if layers is None else layers, checkpoint.num_layers())
    device = device or default_device()
    encoder = open_encoder(
        checkpoint, chosen, device=device, batch_size=default_batch_size(device), precision=precision
    )
    windows = window_settings(checkpoint, hop)
    chunks = stream_audio(source, sample_rate=encoder.sample_rate, start=start, end=end)
    return embed_chunks(encoder, chunks, windows)
