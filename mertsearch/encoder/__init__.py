"""Models: registry, safe checkpoint loading, layer selection, pooling."""

from mertsearch.encoder.checkpoint import Checkpoint, resolve_checkpoint
from mertsearch.encoder.embed import Embedding, embed_samples
from mertsearch.encoder.mert import MertEncoder
from mertsearch.encoder.pooling import l2_normalize, pool_track
from mertsearch.encoder.registry import DEFAULT_MODEL, MODELS, ModelInfo, lookup

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Checkpoint",
    "Embedding",
    "MertEncoder",
    "ModelInfo",
    "embed_samples",
    "l2_normalize",
    "lookup",
    "pool_track",
    "resolve_checkpoint",
]
