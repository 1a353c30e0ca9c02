"""The models mertsearch knows by name, each pinned to one revision of its hub repository."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    repo_id: str
    revision: str
    sample_rate: int
    num_layers: int
    dim: int
    context_s: float
    default_layer: int
    licence: str


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in [
        ModelInfo(
            name="mert-v1-95m",
            repo_id="m-a-p/MERT-v1-95M",
            revision="12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
            sample_rate=24000,
            num_layers=12,
            dim=768,
            context_s=5.0,
            default_layer=7,
            licence="CC-BY-NC-4.0",
        ),
    ]
}

DEFAULT_MODEL = "mert-v1-95m"


def lookup(model: str) -> ModelInfo | None:
    """The registry entry for a name (``mert-v1-95m``) or its repo id (``m-a-p/MERT-v1-95M``)."""
    key = model.lower()
    for info in MODELS.values():
        if key in (info.name, info.repo_id.lower()):
            return info
    return None
