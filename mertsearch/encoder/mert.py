"""Embed audio windows with one hidden layer of a MERT model.

"Layer L" is ``hidden_states[L]`` of transformers' model: 0 is the input to the first
transformer layer, L the output of layer L. Only layers up to the highest one needed run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mertsearch.encoder.checkpoint import Checkpoint, load_model, read_preprocessing
from mertsearch.errors import InvalidArgumentError


class MertEncoder:
    """Per-layer window vectors (mean over frames) from a checkpoint, computed in batches.

    ``layers`` are the hidden states whose vectors are searched (their L2-normalised mean when
    there are several); with ``keep_all`` every layer 0..N is computed too, so a catalog can switch
    layers later without running the model again.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        layers: int | Sequence[int],
        *,
        keep_all: bool = False,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> None:
        model = load_model(checkpoint)
        num_layers = model.config.num_hidden_layers
        self.layers = (layers,) if isinstance(layers, int) else tuple(layers)
        if not self.layers or any(not 0 <= layer <= num_layers for layer in self.layers):
            raise InvalidArgumentError(f"layers must be between 0 and {num_layers} for this model, got {layers}")
        # The hidden states computed: every one with keep_all, else only those searched.
        self.capture = tuple(range(num_layers + 1)) if keep_all else tuple(sorted(set(self.layers)))
        encoder = model.encoder
        encoder.layers = encoder.layers[: max(self.capture)]
        if getattr(model.config, "do_stable_layer_norm", False):
            # The pre-LN encoder normalises after its last layer; hidden_states[L] is taken before that.
            encoder.layer_norm = nn.Identity()
        self.checkpoint = checkpoint
        self.keep_all = keep_all
        self.num_layers = num_layers
        self.dim = model.config.hidden_size
        self.preprocessing = read_preprocessing(checkpoint)
        self.sample_rate = self.preprocessing.sample_rate
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = model.to(self.device)

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Mean-over-frames vectors of equal-length windows (n, samples): shaped (n, len(capture), dim)."""
        if windows.ndim != 2:
            raise InvalidArgumentError(f"windows must be shaped (n, samples), got {windows.shape}")
        out = np.empty((len(windows), len(self.capture), self.dim), dtype=np.float32)
        for first in range(0, len(windows), self.batch_size):
            batch = self.preprocessing.apply(windows[first : first + self.batch_size].astype(np.float32))
            inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.capture == (max(self.capture),):
                hidden = [self.model(inputs).last_hidden_state]
            else:
                states = self.model(inputs, output_hidden_states=True).hidden_states
                hidden = [states[layer] for layer in self.capture]
            out[first : first + len(batch)] = torch.stack([h.mean(dim=1) for h in hidden], dim=1).float().cpu().numpy()
        return out
