"""Embed audio windows with one hidden layer of a MERT model.

"Layer L" is ``hidden_states[L]`` of transformers' model: 0 is the input to the first
transformer layer, L the output of layer L. Only layers up to the highest one needed run.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mertsearch import cache
from mertsearch.config import check_precision
from mertsearch.encoder.checkpoint import Checkpoint, load_model, read_preprocessing
from mertsearch.encoder.frontend import fold_weight_norm, use_matmul_front_end
from mertsearch.encoder.pooling import captured_layers
from mertsearch.errors import InvalidArgumentError

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Lowest cosine between a reduced-precision vector and the fp32 one that "auto" accepts.
MIN_COSINE = 0.9999
# "auto"'s measured decisions, so that each model load does not run the model four more times.
PRECISION_CACHE = "precision.json"


def open_encoder(checkpoint: Checkpoint, layers: int | Sequence[int], **options) -> MertEncoder:
    """The encoder a checkpoint calls for: MertEncoder, or the weight-free SpectralEncoder."""
    from mertsearch.encoder.checkpoint import architecture
    from mertsearch.encoder.registry import SPECTRAL

    if architecture(checkpoint.config()) == SPECTRAL:
        from mertsearch.encoder.spectral import SpectralEncoder

        # One fixed "layer"; no device, batch or precision choice.
        return SpectralEncoder(checkpoint, keep_all=options.get("keep_all", False))
    return MertEncoder(checkpoint, layers, **options)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (AVX512-BF16 or AMX on a CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # oneDNN's own test for CPU bf16 instructions
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def decide_precision(
    *, native: bool, fp32_s: float = 0.0, bf16_s: float = 0.0, min_cosine: float = 0.0
) -> tuple[str, str]:
    """("bf16" or "fp32", why): bf16 only where the device computes it natively, it is clearly
    faster than fp32, and its vectors stay within MIN_COSINE of fp32's."""
    if not native:
        return "fp32", "no native bf16 on this device"
    if min_cosine < MIN_COSINE:
        return "fp32", f"bf16 vectors only within cosine {min_cosine:.6f} of fp32"
    if bf16_s >= 0.9 * fp32_s:
        return "fp32", "bf16 is not faster here"
    return "bf16", f"bf16 {fp32_s / bf16_s:.2f}x faster, min cosine {min_cosine:.6f}"


class MertEncoder:
    """Per-layer window vectors (mean over frames) from a checkpoint, computed in batches.

    ``layers`` are the hidden states whose vectors are searched (their L2-normalised mean when
    there are several); with ``keep_all`` every layer 0..N is computed too, so a catalog can switch
    layers later without running the model again.

    ``precision``: "fp32"; "bf16" or "fp16" (matrix products in that type, norms in fp32);
    "auto" measures bf16 against fp32 on this machine once and keeps it only where it is faster
    and its vectors stay within cosine 0.9999 of fp32 (:attr:`precision_report` says what it found,
    and ``cached: True`` where the decision is one measured earlier, see mertsearch.cache);
    None: $MERTSEARCH_PRECISION, else "auto".
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        layers: int | Sequence[int],
        *,
        keep_all: bool = False,
        device: str = "cpu",
        batch_size: int = 1,
        precision: str | None = None,
    ) -> None:
        precision = check_precision(precision)
        model = load_model(checkpoint)
        num_layers = model.config.num_hidden_layers
        self.layers = (layers,) if isinstance(layers, int) else tuple(layers)
        if not self.layers or any(not 0 <= layer <= num_layers for layer in self.layers):
            raise InvalidArgumentError(f"layers must be between 0 and {num_layers} for this model, got {layers}")
        encoder = model.encoder
        self._blocks = encoder.layers  # every transformer layer; each call runs those it needs
        # The text tower (mertsearch.encoder.clamp3.Clamp3) while a catalog with text search
        # ingests: its recipe needs every layer's window means (see encoder.text_features).
        self.text = None
        # Every layer's means without the tower here (a Ray actor's, whose driver runs the tower).
        self.every_layer = False
        if getattr(model.config, "do_stable_layer_norm", False):
            # The pre-LN encoder normalises after its last layer; hidden_states[L] is taken before that.
            encoder.layer_norm = nn.Identity()
        self.checkpoint = checkpoint
        self.keep_all = keep_all
        self.num_layers = num_layers
        encoder.layers = self._blocks[: max(self.capture)]
        self.dim = model.config.hidden_size
        self.frame_samples = math.prod(model.config.conv_stride)  # input samples per output frame
        self.preprocessing = read_preprocessing(checkpoint)
        self.sample_rate = self.preprocessing.sample_rate
        self.device = torch.device(device)
        self.batch_size = batch_size
        fold_weight_norm(model)
        # On a CPU the convolutions run as matrix products (see frontend); a GPU's own kernels are fine.
        self.matmul_front_end = self.device.type == "cpu" and use_matmul_front_end(model)
        self.model = model.to(self.device)
        self.precision = "fp32"
        self.precision_report: dict = {"asked": precision}
        if precision == "auto":
            self.precision = self._measure_bf16()
        else:
            self.precision = precision
        self.precision_report["chosen"] = self.precision
        if self.precision == "bf16" and self.device.type == "cpu":
            # autocast would cast every weight to bf16 on every call (~10% of a window's time here).
            for module in self.model.modules():
                if isinstance(module, nn.Linear):
                    module.to(torch.bfloat16)

    @property
    def capture(self) -> tuple[int, ...]:
        """The hidden states computed: the searched layers, or every layer where all are kept or
        the text tower needs them."""
        every = range(self.num_layers + 1) if self.keep_all or self.every_layer or self.text is not None else ()
        return captured_layers(self.layers, every)

    def _autocast(self, precision: str):
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST[precision])

    def _measure_bf16(self) -> str:
        """bf16 or fp32, by :func:`decide_precision` on this device's measurements, or by the same
        measurements made earlier for these weights, layers, batch size, device and torch."""
        if not native_bf16(self.device):
            precision, self.precision_report["why"] = decide_precision(native=False)
            return precision
        key = json.dumps(
            [
                self.device.type,
                _device_name(self.device),
                torch.get_num_threads(),
                torch.__version__,
                self.checkpoint.weights_sha256(),
                list(self.capture),
                self.batch_size,
                # How the model is computed: a decision measured with the other way does not hold.
                "matmul front end" if self.matmul_front_end else "convolutions",
            ]
        )
        earlier = cache.lookup(PRECISION_CACHE, key)
        if earlier is not None and earlier.get("chosen") in ("bf16", "fp32"):
            self.precision_report.update(earlier, cached=True)
            return earlier["chosen"]
        precision = self._measure()
        cache.store(PRECISION_CACHE, key, {**self.precision_report, "chosen": precision})
        return precision

    def _measure(self) -> str:
        # Two seconds of a chirp over quiet noise, run twice per precision (the first run warms up).
        t = np.arange(2 * self.sample_rate) / self.sample_rate
        clip = np.sin(2 * np.pi * (110 + 400 * t) * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
        windows = np.repeat(clip[None].astype(np.float32), self.batch_size, axis=0)
        (fp32_s, reference), (bf16_s, reduced) = (self._timed(windows, p) for p in ("fp32", "bf16"))
        cosine = float(
            np.min(
                np.sum(reference * reduced, axis=1)
                / (np.linalg.norm(reference, axis=1) * np.linalg.norm(reduced, axis=1) + 1e-12)
            )
        )
        self.precision_report.update(fp32_s=round(fp32_s, 4), bf16_s=round(bf16_s, 4), min_cosine=cosine)
        precision, self.precision_report["why"] = decide_precision(
            native=True, fp32_s=fp32_s, bf16_s=bf16_s, min_cosine=cosine
        )
        return precision

    def _timed(self, windows: np.ndarray, precision: str) -> tuple[float, np.ndarray]:
        """Seconds that embedding ``windows`` in ``precision`` takes (the second of two runs: the
        first warms up), and the vectors, one row per window and layer."""
        for _ in range(2):
            started = time.perf_counter()
            vectors = self._embed(windows, precision)
            elapsed = time.perf_counter() - started
        return elapsed, vectors.reshape(-1, self.dim)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Mean-over-frames vectors of equal-length windows (n, samples): shaped (n, len(capture), dim)."""
        if windows.ndim != 2:
            raise InvalidArgumentError(f"windows must be shaped (n, samples), got {windows.shape}")
        return self._embed(windows, self.precision)

    @torch.inference_mode()
    def _embed(self, windows: np.ndarray, precision: str) -> np.ndarray:
        out = np.empty((len(windows), len(self.capture), self.dim), dtype=np.float32)
        cuda = self.device.type == "cuda"
        capture = self.capture
        if len(self.model.encoder.layers) != max(capture):
            self.model.encoder.layers = self._blocks[: max(capture)]
        for first in range(0, len(windows), self.batch_size):
            batch = self.preprocessing.apply(windows[first : first + self.batch_size].astype(np.float32))
            inputs = torch.from_numpy(np.ascontiguousarray(batch))
            # Page-locked memory lets the copy to the GPU run without blocking the host.
            inputs = inputs.pin_memory().to(self.device, non_blocking=True) if cuda else inputs
            with self._autocast(precision):
                if capture == (max(capture),):
                    hidden = [self.model(inputs).last_hidden_state]
                else:
                    states = self.model(inputs, output_hidden_states=True).hidden_states
                    hidden = [states[layer] for layer in capture]
                means = torch.stack([h.float().mean(dim=1) for h in hidden], dim=1)
            out[first : first + len(batch)] = means.cpu().numpy()
        return out


def _device_name(device: torch.device) -> str:
    """What tells one device's speed from another's: the GPU's name, or the CPU's model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
