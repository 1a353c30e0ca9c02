"""Decode audio with FFmpeg (through torchcodec) to mono float32 at a target sample rate.

Files, in-memory bytes and numpy arrays all take the same road: arrays at another rate are
wrapped as WAV bytes and decoded by FFmpeg too, so a query is resampled exactly like the catalog.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torchcodec.decoders import AudioDecoder
from torchcodec.encoders import AudioEncoder

from mertsearch.errors import AudioDecodeError

# A path, the encoded bytes of a file, or a (samples, sample_rate) pair; samples are
# shaped (n,) or (channels, n).
AudioInput = str | os.PathLike | bytes | tuple[np.ndarray, int]

# Peak below which a track counts as silent: about -90 dBFS, under 16-bit dither.
SILENCE_PEAK = 3e-5

_CPP_PREFIX = re.compile(r"^\w+, \S+\.cpp:\d+, ")


def _reason(exc: Exception) -> str:
    """FFmpeg's message without torchcodec's source-file prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _CPP_PREFIX.sub("", text)


def _array_to_wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] == 0:
        raise AudioDecodeError(f"expected samples shaped (n,) or (channels, n), got {samples.shape}")
    if not np.isfinite(data).all():
        raise AudioDecodeError("samples contain NaN or infinite values")
    encoded = AudioEncoder(torch.from_numpy(np.ascontiguousarray(data)), sample_rate=int(sample_rate))
    return encoded.to_tensor(format="wav").numpy().tobytes()


def _mono(data: np.ndarray) -> np.ndarray:
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    # Mean of the channels; FFmpeg's own downmix would scale by 1/sqrt(2) instead.
    return data.mean(axis=0, dtype=np.float32)


def decode_audio(
    source: AudioInput,
    *,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Decode ``source`` to mono float32 samples at ``sample_rate``, optionally only [start, end) seconds.

    Raises AudioDecodeError with a readable reason when the input is empty, not audio, or silent.
    """
    if start is not None and start < 0:
        raise AudioDecodeError(f"start must be >= 0 seconds, got {start}")
    if start is not None and end is not None and end <= start:
        raise AudioDecodeError(f"end ({end} s) must be after start ({start} s)")

    if isinstance(source, tuple):
        samples, rate = source
        array = np.asarray(samples)
        if int(rate) == sample_rate and start is None and end is None:
            mono = _mono(array.astype(np.float32, copy=False))
            return _checked(mono, sample_rate)
        source = _array_to_wav_bytes(array, int(rate))

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"no such file: {path}")
        if path.stat().st_size == 0:
            raise AudioDecodeError("empty file (0 bytes)")
        source = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError("empty input (0 bytes)")
        source = bytes(source)
    else:
        raise AudioDecodeError(f"cannot decode an object of type {type(source).__name__}")

    try:
        decoder = AudioDecoder(source, sample_rate=sample_rate)
        if start is None and end is None:
            decoded = decoder.get_all_samples()
        else:
            decoded = decoder.get_samples_played_in_range(start_seconds=start or 0.0, stop_seconds=end)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {_reason(exc)}") from exc
    return _checked(_mono(decoded.data.numpy()), sample_rate)


def _checked(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    if mono.size == 0:
        raise AudioDecodeError("no audio samples (zero-length audio)")
    if not np.isfinite(mono).all():
        raise AudioDecodeError("decoded audio contains NaN or infinite values")
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise AudioDecodeError(
            f"silent audio ({mono.size / sample_rate:.1f} s with peak level {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)"
        )
    return np.ascontiguousarray(mono)
