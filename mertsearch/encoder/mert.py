"""Embed audio windows with one hidden layer of a MERT model.

"Layer L" is ``hidden_states[L]`` of transformers' HubertModel: 0 is the input to the first
transformer layer, L the output of layer L. Only layers 1..L run; the rest are dropped.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mertsearch.encoder.checkpoint import Checkpoint, load_model, read_preprocessing
from mertsearch.errors import InvalidArgumentError


class MertEncoder:
    """Window vectors (mean over frames of one layer) from a checkpoint, computed in batches."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        layer: int,
        *,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> None:
        model = load_model(checkpoint)
        num_layers = model.config.num_hidden_layers
        if not 0 <= layer <= num_layers:
            raise InvalidArgumentError(f"layer must be between 0 and {num_layers} for this model, got {layer}")
        encoder = model.encoder
        encoder.layers = encoder.layers[:layer]
        if getattr(model.config, "do_stable_layer_norm", False):
            # The pre-LN encoder normalises after its last layer; hidden_states[L] is taken before that.
            encoder.layer_norm = nn.Identity()
        self.checkpoint = checkpoint
        self.layer = layer
        self.num_layers = num_layers
        self.dim = model.config.hidden_size
        self.preprocessing = read_preprocessing(checkpoint)
        self.sample_rate = self.preprocessing.sample_rate
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = model.to(self.device)

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Mean-over-frames vectors, shaped (n, dim), of equal-length windows shaped (n, samples)."""
        if windows.ndim != 2:
            raise InvalidArgumentError(f"windows must be shaped (n, samples), got {windows.shape}")
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        for first in range(0, len(windows), self.batch_size):
            batch = self.preprocessing.apply(windows[first : first + self.batch_size].astype(np.float32))
            inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            hidden = self.model(inputs).last_hidden_state
            out[first : first + len(batch)] = hidden.mean(dim=1).float().cpu().numpy()
        return out
