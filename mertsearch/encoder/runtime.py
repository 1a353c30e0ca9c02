"""Where and how a catalog's encoder runs: device, batch size, and opening it from the manifest.

Every executor (this process, a Ray actor) opens the model through :func:`open_catalog_encoder`,
so the checkpoint is found and its weights checked against the catalog the same way everywhere.
torch loads only when a model does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mertsearch.config import EncoderSpec
from mertsearch.encoder.checkpoint import Checkpoint, resolve_checkpoint
from mertsearch.errors import CatalogMismatchError

if TYPE_CHECKING:
    from mertsearch.encoder.mert import MertEncoder


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_batch_size(device: str) -> int:
    # A GPU needs many windows per call to be busy; on a CPU a batch of 4 was ~10% slower per window than 1.
    return 32 if device.startswith("cuda") else 1


def checkpoint_of(spec: EncoderSpec, *, directory: str | os.PathLike | None = None) -> Checkpoint:
    """The checkpoint a manifest's "encoder" section names: at ``directory`` when that is a folder
    here (where another process found it), else resolved from its source and revision."""
    if directory is not None and Path(directory).is_dir():
        return Checkpoint(Path(directory), spec.source, None, spec.revision)
    return resolve_checkpoint(spec.source, revision=spec.revision)


def open_catalog_encoder(
    spec: EncoderSpec,
    *,
    checkpoint: Checkpoint | None = None,
    directory: str | os.PathLike | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    where: str | None = None,
    every_layer: bool = False,
) -> MertEncoder:
    """The encoder a manifest's "encoder" section describes (source, revision, weights_sha256,
    layers, kept_layers), computing every kept layer.

    ``checkpoint`` is one the user gave for this catalog, already compared with the manifest when
    the catalog opened, and used as it is. Without it the checkpoint is found by
    :func:`checkpoint_of` and its weights must be the manifest's, else CatalogMismatchError;
    ``where`` names the place the weights were looked for, when that is not this process (e.g.
    "this Ray node"). ``every_layer``: compute every layer's means (for text vectors made elsewhere).
    ``device`` defaults to :func:`default_device`, ``batch_size`` to
    :func:`default_batch_size`; ``precision`` as MertEncoder takes it.
    """
    from mertsearch.encoder.mert import open_encoder

    if checkpoint is None:
        checkpoint = checkpoint_of(spec, directory=directory)
        _check_weights(checkpoint, spec.weights_sha256, where)
    device = device or default_device()
    encoder = open_encoder(
        checkpoint,
        spec.layers,
        keep_all=bool(spec.kept_layers),
        device=device,
        batch_size=batch_size or default_batch_size(device),
        precision=precision,
    )
    encoder.every_layer = every_layer
    return encoder


def _check_weights(checkpoint: Checkpoint, expected: str, where: str | None) -> None:
    if checkpoint.weights_sha256() == expected:
        return
    if where is None:
        raise CatalogMismatchError(
            f"the weights at {checkpoint.directory} are not the ones this catalog was built with "
            f"(sha256 {expected[:12]}...); pass --model with the original weights"
        )
    raise CatalogMismatchError(
        f"the weights at {checkpoint.directory} on {where} are not the catalog's (sha256 {expected[:12]}...)"
    )
