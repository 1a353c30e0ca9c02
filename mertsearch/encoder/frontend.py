"""The convolutional front end of a MERT model computed as matrix products, for CPUs.

transformers' feature encoder (seven strided Conv1d layers over the waveform, GroupNorm or
LayerNorm, GELU) costs as much as the first seven transformer layers, and on a CPU its
convolutions run far below the machine's matrix-product rate: in bf16, oneDNN's Conv1d reached
~0.37 TFLOPS here where a matrix product of the same size reached ~2.4 (AMX). This module computes
the same function time-major, as (frames, channels) matrices:

- a convolution whose kernel k is at least its stride s reads, for output frame t, the input
  frames s*t .. s*t+k-1; the first s of them are one row of the input reshaped to (T, s*C) (a
  view, no copy), the other k-s are strided views; so the layer is one product plus k-s small ones;
- the first layer's GroupNorm (one group per channel, statistics over time) is folded into its
  weights: the mean and variance over time of a linear function of the input columns follow from
  the columns' own mean and 10x10 covariance, so no pass over the (T, 512) output is needed.

Same results as the module it replaces (to float rounding; the tests compare both), in whatever
precision autocast asks for.
"""

from __future__ import annotations

import torch
from torch import nn


def supported(feature_encoder: nn.Module) -> bool:
    """Whether ``feature_encoder`` is the plain conv stack this module knows how to compute."""
    layers = getattr(feature_encoder, "conv_layers", None)
    if not layers:
        return False
    for index, layer in enumerate(layers):
        conv, norm = getattr(layer, "conv", None), getattr(layer, "layer_norm", None)
        if not isinstance(conv, nn.Conv1d) or not callable(getattr(layer, "activation", None)):
            return False
        if conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1 or conv.kernel_size[0] < conv.stride[0]:
            return False
        if index == 0 and conv.in_channels != 1:
            return False
        if isinstance(norm, nn.GroupNorm):
            if index != 0 or norm.num_groups != norm.num_channels or not norm.affine:
                return False
        elif norm is not None and not isinstance(norm, nn.LayerNorm):
            return False
    return True


class MatmulFeatureEncoder(nn.Module):
    """Drop-in for transformers' feature encoder: waveforms (batch, samples) to (batch, channels,
    frames), computed as described above. Build it only where :func:`supported` says so."""

    def __init__(self, feature_encoder: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(feature_encoder.conv_layers)  # shares their parameters
        self._cast: dict[torch.dtype, list] = {}

    def _taps(self, dtype: torch.dtype) -> list:
        """Per layer after the first: the weights for the reshaped view (s*C_in, C_out) and one
        (C_in, C_out) matrix per remaining tap, in ``dtype`` (cast once, not on every call)."""
        if dtype not in self._cast:
            taps = []
            for layer in list(self.layers)[1:]:
                weight, stride = layer.conv.weight.detach(), layer.conv.stride[0]
                per_tap = [weight[:, :, j].t().contiguous().to(dtype) for j in range(weight.shape[2])]
                taps.append((torch.cat(per_tap[:stride]), per_tap[stride:]))
            self._cast[dtype] = taps
        return self._cast[dtype]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
        with torch.autocast("cpu", enabled=False):
            hidden = self._first(waveforms.float(), low)
        for layer, (reshaped, rest) in zip(list(self.layers)[1:], self._taps(low), strict=True):
            kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
            frames = (hidden.shape[1] - kernel) // stride + 1
            rows = hidden[:, : frames * stride].reshape(hidden.shape[0], frames, -1)
            out = rows @ reshaped
            for j, tap in enumerate(rest):
                # Accumulated in place from a strided view: no copy of the input, no temporary output.
                for window in range(len(out)):
                    out[window].addmm_(
                        hidden[window, stride + j : stride + j + (frames - 1) * stride + 1 : stride], tap
                    )
            if layer.conv.bias is not None:
                out += layer.conv.bias.to(low)
            norm = getattr(layer, "layer_norm", None)
            if norm is not None:
                out = norm(out.float()).to(low)
            hidden = layer.activation(out)
        return hidden.transpose(1, 2)

    def _first(self, waveforms: torch.Tensor, low: torch.dtype) -> torch.Tensor:
        """The first layer in ``low`` precision; its normalisation statistics in float64."""
        layer = self.layers[0]
        conv, norm = layer.conv, getattr(layer, "layer_norm", None)
        columns = waveforms.unfold(1, conv.kernel_size[0], conv.stride[0])  # (batch, frames, k), a view
        weight = conv.weight.detach()[:, 0, :].t()  # (k, C_out)
        if isinstance(norm, nn.GroupNorm):
            # Per channel c the output is columns @ w_c (+ a bias the normalisation removes): its
            # mean over frames is mean(columns) @ w_c and its variance w_c' cov(columns) w_c.
            wide = columns.double()
            mean = wide.mean(1)  # (batch, k)
            covariance = wide.transpose(1, 2) @ wide / wide.shape[1] - mean[:, :, None] * mean[:, None, :]
            w = weight.double()
            variance = ((covariance @ w) * w).sum(1)  # (batch, C_out)
            scale = norm.weight.double() / torch.sqrt(variance + norm.eps)
            shift = norm.bias.double() - (mean @ w) * scale
            # Straight to ``low``: this is the largest tensor of the model (frames x 512), and a
            # float32 copy of it cost more than the product itself (allocation, then a cast).
            return layer.activation(
                torch.baddbmm(shift[:, None, :].to(low), columns.to(low), (w[None] * scale[:, None, :]).to(low))
            )
        hidden = columns @ weight
        if conv.bias is not None:
            hidden = hidden + conv.bias
        if norm is not None:
            hidden = norm(hidden)
        return layer.activation(hidden).to(low)


def use_matmul_front_end(model: nn.Module) -> bool:
    """Put a :class:`MatmulFeatureEncoder` in place of ``model.feature_extractor`` where it is
    :func:`supported`; whether it did."""
    if not supported(model.feature_extractor):
        return False
    model.feature_extractor = MatmulFeatureEncoder(model.feature_extractor)
    return True


def fold_weight_norm(model: nn.Module) -> None:
    """Compute weight-normalised weights (the positional convolution's) once instead of on every
    call: the same weights, so the same results."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
