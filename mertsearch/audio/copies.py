"""Copies of a recording as a library comes to hold one twice: encoded again by FFmpeg (another
codec, bit rate or sample rate) or with its start trimmed, made in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# FFmpeg's muxer of a file suffix, where the two differ (FFmpeg writes .m4a files with "ipod").
MUXERS = {"m4a": "ipod"}


@dataclass(frozen=True)
class CopyKind:
    suffix: str  # the container, which chooses the codec: mp3, m4a (AAC), opus, flac
    bit_rate: int | None = None
    resample: bool = False  # to 48 kHz (to 44.1 kHz when the source is at 48 kHz already)
    trim_s: float = 0.0  # cut from the start
    rate: int | None = None  # the rate the codec needs (Opus: 48 kHz), else the source's

    def sample_rate(self, source: int) -> int | None:
        if self.resample:
            return 44_100 if source == 48_000 else 48_000
        return self.rate if self.rate not in (None, source) else None

    def encode(self, samples: np.ndarray, rate: int) -> bytes:
        """The bytes of a ``suffix`` file holding this copy of ``samples`` ((channels, n) or (n,) at ``rate``)."""
        import torch
        from torchcodec.encoders import AudioEncoder

        array = np.atleast_2d(np.clip(samples, -1, 1).astype(np.float32, copy=False))
        cut = torch.from_numpy(np.ascontiguousarray(array[:, int(round(self.trim_s * rate)) :]))
        encoded = AudioEncoder(cut, sample_rate=rate).to_tensor(
            format=MUXERS.get(self.suffix, self.suffix), bit_rate=self.bit_rate, sample_rate=self.sample_rate(rate)
        )
        return encoded.numpy().tobytes()
