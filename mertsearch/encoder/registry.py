"""The models mertsearch knows by name.

Each is fetched from its hub repository at a pinned revision where one is recorded here; the
others are fetched at the repository's current head, whose commit the catalog manifest records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    repo_id: str
    revision: str | None
    architecture: str  # the transformers class the weights load into
    sample_rate: int
    feature_rate: int  # frames per second of the hidden states
    num_layers: int
    dim: int
    context_s: float  # pre-training context: the window length
    params: str
    default_layer: int
    licence: str

    def as_dict(self) -> dict:
        return asdict(self)


_MERT_LICENCE = "CC-BY-NC-4.0"

MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in [
        ModelInfo(
            "mert-v1-95m",
            "m-a-p/MERT-v1-95M",
            "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5",
            "HubertModel",
            24000,
            75,
            12,
            768,
            5.0,
            "95M",
            7,
            _MERT_LICENCE,
        ),
        ModelInfo(
            "mert-v1-330m",
            "m-a-p/MERT-v1-330M",
            "af10da70c94a0c849de9cc94b83e12769c4db499",
            "HubertModel",
            24000,
            75,
            24,
            1024,
            5.0,
            "330M",
            14,
            _MERT_LICENCE,
        ),
        ModelInfo("mert-v0", "m-a-p/MERT-v0", None, "HubertModel", 16000, 50, 12, 768, 5.0, "95M", 7, _MERT_LICENCE),
        ModelInfo(
            "mert-v0-public",
            "m-a-p/MERT-v0-public",
            None,
            "HubertModel",
            16000,
            50,
            12,
            768,
            5.0,
            "95M",
            7,
            _MERT_LICENCE,
        ),
        ModelInfo(
            "music2vec-v1",
            "m-a-p/music2vec-v1",
            None,
            "Data2VecAudioModel",
            16000,
            50,
            12,
            768,
            30.0,
            "94M",
            7,
            "see the model card",
        ),
    ]
}

DEFAULT_MODEL = "mert-v1-95m"

# Window length by architecture, for checkpoints that are not in the registry.
CONTEXT_S = {"hubert": 5.0, "data2vec-audio": 30.0}


def lookup(model: str | None) -> ModelInfo | None:
    """The registry entry for a name (``mert-v1-95m``) or its repo id (``m-a-p/MERT-v1-95M``)."""
    key = (model or "").lower()
    for info in MODELS.values():
        if key in (info.name, info.repo_id.lower()):
            return info
    return None
