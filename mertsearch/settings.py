"""From what a user asks (model, layers, hop) to the manifest sections that shape vectors.

Kept apart from the catalog so it can be read without torch: nothing here loads a model.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Sequence

from mertsearch.config import EncoderSpec, Manifest, WindowSettings
from mertsearch.encoder.checkpoint import (
    Checkpoint,
    architecture,
    default_layer,
    default_window_s,
    read_preprocessing,
)
from mertsearch.errors import InvalidArgumentError
from mertsearch.version import __version__

# The metadata database of new catalogs, as a SQLAlchemy URL (default: SQLite in the catalog).
DATABASE_ENV = "MERTSEARCH_DATABASE"

# What a user may give for layers: one index, several, or "all" (every hidden state 0..N).
LayersArg = int | Sequence[int] | str | None


def parse_layers(text: str) -> list[int] | str:
    """'7' -> [7], '6,7,8' -> [6, 7, 8], 'all' -> 'all'."""
    text = text.strip().lower()
    if text == "all":
        return "all"
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidArgumentError(f"layers must be numbers separated by commas, or 'all'; got {text!r}") from None
    if not layers:
        raise InvalidArgumentError("no layers given")
    return layers


def database_from_env() -> str | None:
    """MERTSEARCH_DATABASE, when it is set and not empty."""
    return os.environ.get(DATABASE_ENV, "").strip() or None


def resolve_layers(layers: LayersArg, num_layers: int) -> list[int]:
    """Sorted unique layer indices, each checked against the model's depth."""
    if isinstance(layers, str):
        layers = parse_layers(layers)
    if layers == "all":
        return list(range(num_layers + 1))
    chosen = sorted({layers} if isinstance(layers, int) else set(layers))
    bad = [layer for layer in chosen if not 0 <= layer <= num_layers]
    if bad or not chosen:
        raise InvalidArgumentError(f"layers must be between 0 and {num_layers} for this model, got {bad or chosen}")
    return chosen


def encoder_manifest(checkpoint: Checkpoint, layers: LayersArg, *, keep_all: bool) -> EncoderSpec:
    """The manifest's "encoder" section for a checkpoint and its layers (the model's default if None)."""
    config = checkpoint.config()
    num_layers = checkpoint.num_layers()
    chosen = resolve_layers(default_layer(checkpoint) if layers is None else layers, num_layers)
    pre = read_preprocessing(checkpoint)
    return EncoderSpec(
        source=checkpoint.source,
        repo_id=checkpoint.repo_id,
        revision=checkpoint.revision,
        weights_sha256=checkpoint.weights_sha256(),
        architecture=architecture(config),
        sample_rate=pre.sample_rate,
        do_normalize=pre.do_normalize,
        layers=chosen,
        kept_layers=list(range(num_layers + 1)) if keep_all else [],
        num_layers=num_layers,
        dim=int(config["hidden_size"]),
    )


def window_settings(checkpoint: Checkpoint, hop: float | None, sample: float | None = None) -> WindowSettings:
    """Windows of the model's pre-training context, one after the other unless ``hop`` is given;
    ``sample`` seconds of each track (None: all of it)."""
    window = default_window_s(checkpoint)
    return WindowSettings(window_s=window, hop_s=window if hop is None else hop, sample_s=sample)


def new_manifest(
    checkpoint: Checkpoint, layers: LayersArg, *, keep_all: bool, hop: float | None, sample: float | None = None
) -> Manifest:
    return Manifest(
        encoder=encoder_manifest(checkpoint, layers, keep_all=keep_all),
        windows=window_settings(checkpoint, hop, sample),
        created_by=f"mertsearch {__version__}",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def wanted_manifest(
    stored: Manifest,
    checkpoint: Checkpoint | None,
    layers: LayersArg,
    *,
    keep_all: bool,
    hop: float | None,
    sample: float | None = None,
) -> Manifest:
    """The stored manifest with what the user asked for laid over it, to compare the two."""
    wanted = copy.deepcopy(stored)
    encoder = wanted.encoder
    if checkpoint is not None:
        asked = encoder_manifest(checkpoint, encoder.layers if layers is None else layers, keep_all=keep_all)
        wanted.encoder = dataclasses.replace(asked, kept_layers=asked.kept_layers if keep_all else encoder.kept_layers)
    else:
        if layers is not None:
            encoder.layers = resolve_layers(layers, encoder.num_layers)
        if keep_all:
            encoder.kept_layers = list(range(encoder.num_layers + 1))
    if hop is not None:
        wanted.windows = dataclasses.replace(wanted.windows, hop_s=hop)
    if sample is not None:
        wanted.windows = dataclasses.replace(wanted.windows, sample_s=sample)
    return wanted
