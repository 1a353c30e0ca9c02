"""Decode audio with FFmpeg (through torchcodec) to mono float32 at the model's sample rate.

Files and in-memory bytes are decoded at their own rate, a chunk at a time, downmixed to the
mean of their channels and resampled with torchaudio's sinc resampler (what ``T.Resample`` in
MERT's published recipe uses). Numpy arrays skip the decoder and take the same downmix and
resampler, so a query is processed exactly like the catalog. Memory stays bounded however
long the file: only one chunk and the resampler's few samples of context are held at a time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional
from torchcodec.decoders import AudioDecoder

from mertsearch.errors import AudioDecodeError, AudioTooLongError
from mertsearch.files import is_utf8

# A path, the encoded bytes of a file, or a (samples, sample_rate) pair; samples are
# shaped (n,) or (channels, n).
AudioInput = str | os.PathLike | bytes | tuple[np.ndarray, int]

# Peak below which a track counts as silent: about -90 dBFS, under 16-bit dither.
SILENCE_PEAK = 3e-5

# Seconds of audio decoded at a time.
CHUNK_S = 20.0

# torchaudio's resampler defaults (T.Resample's too): Hann-windowed sinc, 6 zero crossings, 0.99 roll-off.
_LOWPASS_WIDTH = 6
_ROLLOFF = 0.99

# Sample rates accepted: telephone speech up to studio masters. A corrupt header can claim any
# number; resampling from 1 Hz or to a ratio like 44101/24000 would take hours or gigabytes.
MIN_RATE, MAX_RATE = 1000, 768_000
# The resampling filter's largest size (floats): every common rate pair needs a few thousand.
_MAX_KERNEL = 1 << 22

_CPP_PREFIX = re.compile(r"^\w+, \S+\.cpp:\d+, ")
_END_OF_STREAM = "No audio frames were decoded"


def _reason(exc: Exception) -> str:
    """FFmpeg's message without torchcodec's source-file prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _CPP_PREFIX.sub("", text)


class Resampler:
    """torchaudio's ``functional.resample``, fed a chunk at a time.

    The output is the whole signal's resampling, sample for sample: each part is resampled
    with enough real neighbouring input around it that the filter never reaches the padding
    torchaudio adds at a segment's edges, except at the true start and end of the signal.
    """

    def __init__(self, orig_rate: int, new_rate: int) -> None:
        if not MIN_RATE <= orig_rate <= MAX_RATE:
            raise AudioDecodeError(f"unsupported sample rate: {orig_rate} Hz")
        divisor = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate // divisor, new_rate // divisor
        width = math.ceil(_LOWPASS_WIDTH * self.orig / (_ROLLOFF * min(self.orig, self.new)))
        if self.new * (2 * width + self.orig) > _MAX_KERNEL:
            raise AudioDecodeError(f"unsupported sample rate: {orig_rate} Hz (no simple ratio to {new_rate} Hz)")
        # Input kept on each side of the part resampled: whole blocks of ``orig`` samples, past the filter's reach.
        self._context = self.orig * (math.ceil((width + self.orig) / self.orig) + 1)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # input index of _buffer[0], a multiple of orig
        self._blocks_out = 0  # blocks of ``new`` output samples already returned
        self._total = 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Output samples that no later input can change."""
        if self.orig == self.new:
            return samples
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self._total += len(samples)
        return self._emit(max(self._blocks_out, (self._total - self._context) // self.orig))

    def finish(self) -> np.ndarray:
        """The rest of the output, once the input has ended."""
        if self.orig == self.new:
            return np.zeros(0, dtype=np.float32)
        return self._emit(None)

    def _emit(self, end_block: int | None) -> np.ndarray:
        if end_block == self._blocks_out:
            return np.zeros(0, dtype=np.float32)
        low = max(0, self._blocks_out * self.orig - self._context)
        segment = torch.from_numpy(self._buffer[low - self._buffer_start :])
        if len(segment) == 0:  # nothing was decoded at all
            return np.zeros(0, dtype=np.float32)
        out = torchaudio.functional.resample(segment, self.orig, self.new).numpy()
        first = (self._blocks_out - low // self.orig) * self.new
        if end_block is None:
            result = out[first:]
        else:
            result = out[first : first + (end_block - self._blocks_out) * self.new]
            self._blocks_out = end_block
        keep_from = max(0, self._blocks_out * self.orig - self._context)
        self._buffer = self._buffer[keep_from - self._buffer_start :]
        self._buffer_start = keep_from
        return result


def _mono(data: np.ndarray) -> np.ndarray:
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    # Mean of the channels; FFmpeg's own downmix would scale by 1/sqrt(2) instead.
    return data.mean(axis=0, dtype=np.float32)


def _native_chunks(
    source: AudioInput, start: float | None, end: float | None, chunk_s: float
) -> tuple[int, Iterator[np.ndarray]]:
    """(rate, mono chunks at that rate) of the [start, end) part of ``source``."""
    if isinstance(source, tuple):
        samples, rate = source
        array = np.asarray(samples)
        if array.ndim not in (1, 2) or array.shape[-1] == 0:
            raise AudioDecodeError(f"expected samples shaped (n,) or (channels, n), got {array.shape}")
        if int(rate) <= 0:
            raise AudioDecodeError(f"sample rate must be > 0, got {rate}")
        first = round((start or 0.0) * rate)
        last = None if end is None else round(end * rate)
        return int(rate), iter([_mono(array[..., first:last].astype(np.float32, copy=False))])

    decoder = _decoder(source)
    rate = decoder.metadata.sample_rate

    def chunks() -> Iterator[np.ndarray]:
        # Positions are counted in samples, so consecutive ranges meet exactly.
        position = round((start or 0.0) * rate)
        stop = None if end is None else round(end * rate)
        step = max(1, round(chunk_s * rate))
        while stop is None or position < stop:
            upto = position + step if stop is None else min(position + step, stop)
            try:
                data = decoder.get_samples_played_in_range(start_seconds=position / rate, stop_seconds=upto / rate)
            except (RuntimeError, ValueError, IndexError) as exc:
                if _END_OF_STREAM in str(exc):
                    return
                raise AudioDecodeError(f"cannot decode audio: {_reason(exc)}") from exc
            if data.data.shape[-1] == 0:
                return
            yield _mono(data.data.numpy())
            position = upto

    return rate, chunks()


def _decoder(source: str | os.PathLike | bytes | bytearray | memoryview) -> AudioDecoder:
    """FFmpeg's decoder of an encoded file or bytes, with a sample rate."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(f"no such file: {path}")
        if path.stat().st_size == 0:
            raise AudioDecodeError("empty file (0 bytes)")
        source = str(path)
        if not is_utf8(source):
            # torchcodec takes only UTF-8 names; a file object reaches FFmpeg through Python reads.
            source = open(path, "rb")  # noqa: SIM115 - closed by the decoder's garbage collection
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError("empty input (0 bytes)")
        source = bytes(source)
    else:
        raise AudioDecodeError(f"cannot decode an object of type {type(source).__name__}")
    try:
        decoder = AudioDecoder(source)
        rate = decoder.metadata.sample_rate
    except (RuntimeError, ValueError, IndexError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {_reason(exc)}") from exc
    if not rate:
        raise AudioDecodeError("cannot decode audio: the stream has no sample rate")
    return decoder


def native_audio(
    source: str | os.PathLike | bytes, *, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """((channels, n) float32 samples, rate) of ``source``'s [start, end) seconds, as the file holds
    them: every channel, at its own rate (what another encoder would be given)."""
    decoder = _decoder(source)
    try:
        decoded = decoder.get_samples_played_in_range(start_seconds=start or 0.0, stop_seconds=end)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {_reason(exc)}") from exc
    if decoded.data.shape[-1] == 0:
        raise AudioDecodeError("no audio samples (zero-length audio)")
    return decoded.data.numpy().astype(np.float32, copy=False), decoded.sample_rate


def audio_duration(source: str | os.PathLike) -> float | None:
    """Seconds of audio in a file, as its header says (None: the header does not say)."""
    metadata = _decoder(source).metadata
    duration = metadata.duration_seconds_from_header or metadata.duration_seconds
    return float(duration) if duration else None


def stream_audio(
    source: AudioInput,
    *,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    max_seconds: float | None = None,
    chunk_s: float = CHUNK_S,
    silence_is_error: bool = True,
) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``source`` at ``sample_rate``, optionally only its [start, end) seconds.

    Raises AudioDecodeError with a readable reason when the input is not audio, contains NaN,
    and (after the last chunk) when it turns out empty or, unless ``silence_is_error`` is off
    (a part of a track may be quiet), silent; AudioTooLongError as soon as more than
    ``max_seconds`` have been decoded.
    """
    if start is not None and start < 0:
        raise AudioDecodeError(f"start must be >= 0 seconds, got {start}")
    if start is not None and end is not None and end <= start:
        raise AudioDecodeError(f"end ({end} s) must be after start ({start} s)")
    rate, chunks = _native_chunks(source, start, end, chunk_s)
    resampler = Resampler(rate, sample_rate)
    count, peak = 0, 0.0
    for native in _with_end(chunks):
        out = resampler.finish() if native is None else resampler.feed(native)
        if out.size == 0:
            continue
        if not np.isfinite(out).all():
            raise AudioDecodeError("audio contains NaN or infinite values")
        count += out.size
        if max_seconds is not None and count > max_seconds * sample_rate:
            raise AudioTooLongError(f"clip is longer than {max_seconds:g} s: send a part of it")
        peak = max(peak, float(np.abs(out).max()))
        yield np.ascontiguousarray(out)
    if count == 0:
        raise AudioDecodeError("no audio samples (zero-length audio)")
    if peak < SILENCE_PEAK and silence_is_error:
        raise AudioDecodeError(
            f"silent audio ({count / sample_rate:.1f} s with peak level {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)"
        )


def _with_end(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from chunks
    yield None


def decode_audio(
    source: AudioInput,
    *,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    max_seconds: float | None = None,
    silence_is_error: bool = True,
) -> np.ndarray:
    """All of ``source`` (or its [start, end) seconds) as one array: see :func:`stream_audio`."""
    chunks = stream_audio(
        source,
        sample_rate=sample_rate,
        start=start,
        end=end,
        max_seconds=max_seconds,
        silence_is_error=silence_is_error,
    )
    return np.concatenate(list(chunks))
