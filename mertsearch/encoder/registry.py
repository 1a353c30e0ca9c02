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


def _mert(name: str, repo_id: str, revision: str | None, *, sample_rate: int, **size) -> ModelInfo:
    """A MERT model: HubertModel weights, 5 s pre-training context, 320 samples per frame."""
    defaults = {"num_layers": 12, "dim": 768, "params": "95M", "default_layer": 7}
    return ModelInfo(
        name=name,
        repo_id=repo_id,
        revision=revision,
        architecture="HubertModel",
        sample_rate=sample_rate,
        feature_rate=sample_rate // 320,
        context_s=5.0,
        licence="CC-BY-NC-4.0",
        **(defaults | size),
    )


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in [
        _mert("mert-v1-95m", "m-a-p/MERT-v1-95M", "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5", sample_rate=24000),
        # Layer 14 of 24 is the same relative depth as layer 7 of 12.
        _mert(
            "mert-v1-330m",
            "m-a-p/MERT-v1-330M",
            "af10da70c94a0c849de9cc94b83e12769c4db499",
            sample_rate=24000,
            num_layers=24,
            dim=1024,
            params="330M",
            default_layer=14,
        ),
        _mert("mert-v0", "m-a-p/MERT-v0", None, sample_rate=16000),
        _mert("mert-v0-public", "m-a-p/MERT-v0-public", None, sample_rate=16000),
        ModelInfo(
            name="music2vec-v1",
            repo_id="m-a-p/music2vec-v1",
            revision=None,
            architecture="Data2VecAudioModel",
            sample_rate=16000,
            feature_rate=50,
            num_layers=12,
            dim=768,
            context_s=30.0,
            params="94M",
            default_layer=7,
            licence="see the model card",
        ),
    ]
}

DEFAULT_MODEL = "mert-v1-95m"

# The weight-free baseline: log-mel, MFCC and chroma statistics (mertsearch.encoder.spectral).
SPECTRAL = "spectral"

# Window length by architecture, for checkpoints that are not in the registry.
CONTEXT_S = {"hubert": 5.0, "data2vec-audio": 30.0, SPECTRAL: 5.0}


def lookup(model: str | None) -> ModelInfo | None:
    """The registry entry for a name (``mert-v1-95m``) or its repo id (``m-a-p/MERT-v1-95M``)."""
    key = (model or "").lower()
    for info in MODELS.values():
        if key in (info.name, info.repo_id.lower()):
            return info
    return None
