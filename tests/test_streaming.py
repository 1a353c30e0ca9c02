"""Decoding a chunk at a time gives the same samples as decoding whole, and memory stays bounded."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchaudio.functional as F
from torchcodec.decoders import AudioDecoder

from mertsearch.audio.decode import Resampler, stream_audio
from mertsearch.errors import AudioDecodeError, AudioTooLongError
from tests.helpers import tone_track, write_audio

SR = 24000


@pytest.mark.parametrize("orig", [8000, 11025, 22050, 44100, 48000, 96000, 24000])
def test_resampling_in_chunks_equals_torchaudio_on_the_whole_signal(orig):
    rng = np.random.default_rng(orig)
    signal = rng.standard_normal(orig * 5 + 77).astype(np.float32)
    reference = F.resample(torch.from_numpy(signal), orig, SR).numpy()
    resampler, parts, position = Resampler(orig, SR), [], 0
    while position < len(signal):
        size = int(rng.integers(1, orig))
        parts.append(resampler.feed(signal[position : position + size]))
        position += size
    parts.append(resampler.finish())
    streamed = np.concatenate(parts)
    assert len(streamed) == len(reference)
    np.testing.assert_allclose(streamed, reference, atol=2e-6)


@pytest.mark.parametrize(
    "name,rate", [("x.wav", 44100), ("x.flac", 22050), ("x.mp3", 44100), ("x.ogg", 48000), ("x.opus", 48000)]
)
def test_streamed_file_equals_whole_decode_then_torchaudio(tmp_path, name, rate):
    path = write_audio(tmp_path / name, tone_track(4, 7.3, rate), rate)
    # The reference: FFmpeg's whole decode at the file's rate, channel mean, torchaudio's resampler.
    native = AudioDecoder(str(path)).get_all_samples()
    reference = F.resample(native.data.mean(dim=0), native.sample_rate, SR).numpy()
    chunks = list(stream_audio(path, sample_rate=SR, chunk_s=1.3))
    assert len(chunks) > 4
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(reference)
    np.testing.assert_allclose(streamed, reference, atol=1e-5)


def test_arrays_take_the_same_resampler(tmp_path):
    samples = tone_track(5, 3.0, 44100)
    reference = F.resample(torch.from_numpy(samples.mean(axis=0)), 44100, SR).numpy()
    np.testing.assert_allclose(
        np.concatenate(list(stream_audio((samples, 44100), sample_rate=SR))), reference, atol=2e-6
    )


_MEASURE = """
import json, resource, sys
import numpy as np
from mertsearch.audio.decode import stream_audio
from mertsearch.audio.windows import WindowCutter
from mertsearch.config import WindowSettings
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cutter, windows = WindowCutter(24000, WindowSettings()), 0
for chunk in stream_audio(sys.argv[1], sample_rate=24000):
    windows += len(cutter.feed(chunk))
windows += len(cutter.finish())
print(json.dumps({"windows": windows, "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


# Runs `mertsearch ARGS...` and prints the peak RSS (KB) of the largest process it started.
_PEAK = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "mertsearch.cli", *sys.argv[1:]], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.slow
def test_a_two_hour_file_streams_in_bounded_memory(tmp_path, tiny_model):
    path = tmp_path / "two-hours.flac"
    # Stereo 44.1 kHz: decoded whole this would be 2.5 GB of float32 (0.7 GB once mono at 24 kHz).
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=220:d=7200", "-ac", "2", "-ar", "44100", str(path)],
        check=True,
    )
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    assert result["windows"] == 1440
    assert result["grew_mb"] < 150, result

    # Through `index` too: the indexer's (and its decoder's) peak memory is that of a short file.
    minute = tmp_path / "short" / "minute.flac"
    minute.parent.mkdir()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=220:d=60", "-ac", "2", str(minute)], check=True
    )
    peaks = {}
    for name, target in (("short", minute.parent), ("long", path)):
        command = ["index", str(target), "--catalog", str(tmp_path / f"cat-{name}"), "--model", str(tiny_model)]
        run = subprocess.run([sys.executable, "-c", _PEAK, *command, "--layer", "3"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        peaks[name] = int(run.stdout.split()[-1]) / 1024
    assert peaks["long"] - peaks["short"] < 200, peaks


@pytest.mark.parametrize("rate", [1, 999, 44101, 1_000_000])
def test_absurd_sample_rates_are_refused_not_resampled(rate):
    # A corrupt header can claim any rate; 44101 Hz would need a multi-gigabyte filter.
    with pytest.raises(AudioDecodeError, match="unsupported sample rate"):
        list(stream_audio((np.ones(5000, np.float32), rate), sample_rate=SR))


def test_a_clip_over_the_limit_stops_decoding_early(tmp_path):
    path = write_audio(tmp_path / "long.flac", tone_track(1, 12.0, 44100), 44100)
    with pytest.raises(AudioTooLongError, match="longer than 5 s"):
        for _ in stream_audio(path, sample_rate=SR, max_seconds=5, chunk_s=1.0):
            pass
