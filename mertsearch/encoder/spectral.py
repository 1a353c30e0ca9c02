"""The weight-free baseline encoder: log-mel, MFCC and chroma statistics over each window.

A reference row for every evaluation and a usable choice on machines without a GPU or without
MERT's weights. Each window becomes the mean and standard deviation over its frames of 64
log-mel bands, MFCCs 1-19 (c0 is the level) and 12 chroma bins; each of those six statistics vectors is
standardised (zero mean, unit variance across its values, then scaled so every part weighs the
same), so level changes do not move it and no part dominates the cosine.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from mertsearch.encoder.checkpoint import Checkpoint, read_preprocessing


def chroma_matrix(sample_rate: int, n_fft: int) -> torch.Tensor:
    """(12, n_fft // 2 + 1): which pitch class each FFT bin between 55 Hz and 5 kHz belongs to."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    matrix = torch.zeros(12, len(freqs))
    audible = (freqs >= 55) & (freqs <= 5000)
    pitch_class = torch.round(12 * torch.log2(freqs[audible] / 440.0) + 69).long() % 12
    matrix[pitch_class, torch.nonzero(audible).squeeze(1)] = 1.0
    return matrix


def _standardise(part: torch.Tensor) -> torch.Tensor:
    centred = part - part.mean(dim=1, keepdim=True)
    return centred / (centred.std(dim=1, keepdim=True) + 1e-6) / part.shape[1] ** 0.5


class SpectralEncoder:
    """Same interface as MertEncoder: one "layer" (0), no model weights, always fp32 on the CPU."""

    def __init__(self, checkpoint: Checkpoint, *, keep_all: bool = False, batch_size: int = 8) -> None:
        config = checkpoint.config()
        self.checkpoint = checkpoint
        self.sample_rate = read_preprocessing(checkpoint).sample_rate
        self.layers = self.capture = (0,)
        self.keep_all = keep_all  # layer 0 is all there is: "every layer" is that one
        self.num_layers = 0
        self.dim = int(config["hidden_size"])
        self.device = torch.device("cpu")
        self.batch_size = batch_size
        self.precision = "fp32"
        self.precision_report = {"asked": "fp32", "chosen": "fp32", "why": "the spectral baseline runs in fp32"}
        n_fft, hop = int(config["n_fft"]), int(config["hop_length"])
        self.frame_samples = hop  # input samples per frame
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=n_fft, hop_length=hop, n_mels=int(config["n_mels"])
        )
        self._mfcc = torchaudio.transforms.MFCC(
            sample_rate=self.sample_rate,
            n_mfcc=int(config["n_mfcc"]),
            melkwargs={"n_fft": n_fft, "hop_length": hop, "n_mels": int(config["n_mels"])},
        )
        self._spectrogram = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop)
        self._chroma = chroma_matrix(self.sample_rate, n_fft)

    @torch.inference_mode()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 1, dim) feature vectors of equal-length windows (n, samples)."""
        audio = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        log_mel = torch.log(self._mel(audio) + 1e-6)  # (n, mels, frames)
        mfcc = self._mfcc(audio)[:, 1:]  # without c0, the overall level
        chroma = self._chroma @ self._spectrogram(audio)
        chroma = chroma / (chroma.sum(dim=1, keepdim=True) + 1e-9)
        parts = [stat for feature in (log_mel, mfcc, chroma) for stat in (feature.mean(dim=2), feature.std(dim=2))]
        vectors = torch.cat([_standardise(part) for part in parts], dim=1)
        return vectors[:, None, :].numpy()
