from pathlib import Path

import mutagen
import numpy as np
import pytest

from mertsearch.audio.decode import decode_audio
from mertsearch.audio.tags import read_tags
from mertsearch.errors import AudioDecodeError
from tests.helpers import tone_track, write_audio

SR = 24000


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _chord(seconds: float, rate: int) -> np.ndarray:
    """Three sines, left channel louder than right, shaped (2, n)."""
    t = np.arange(int(seconds * rate)) / rate
    mono = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 330.0, 554.0)) / 4
    return np.stack([mono, 0.5 * mono]).astype(np.float32)


@pytest.mark.parametrize(
    "name,rate",
    [("x.wav", 44100), ("x.flac", 44100), ("x.mp3", 44100), ("x.ogg", 44100), ("x.opus", 48000), ("x.m4a", 44100)],
)
def test_each_format_decodes_to_mono_at_the_model_rate(tmp_path, name, rate):
    path = write_audio(tmp_path / name, _chord(4.0, rate), rate)
    decoded = decode_audio(path, sample_rate=SR)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) / SR - 4.0) < 0.1
    # Lossy codecs add delay and noise; align by the best lag within 60 ms, then compare.
    reference = _chord(4.0, SR).mean(axis=0)  # rendered at 24 kHz directly: no resampler involved
    best = max(_similarity(decoded[lag:], reference) for lag in range(0, 1500, 2))
    assert best > 0.95


def test_downmix_is_the_mean_of_the_channels(tmp_path):
    left = tone_track(1, 2.0, SR, channels=1)[0]
    stereo = np.stack([left, np.zeros_like(left)])
    decoded = decode_audio(write_audio(tmp_path / "s.wav", stereo, SR), sample_rate=SR)
    np.testing.assert_allclose(decoded, left / 2, atol=1e-4)


def test_start_and_end_select_part_of_the_file(tmp_path):
    path = write_audio(tmp_path / "x.wav", tone_track(2, 6.0, SR), SR)
    whole = decode_audio(path, sample_rate=SR)
    part = decode_audio(path, sample_rate=SR, start=2.0, end=3.5)
    assert len(part) == int(1.5 * SR)
    np.testing.assert_allclose(part, whole[2 * SR : int(3.5 * SR)], atol=1e-6)


def test_bytes_and_arrays_decode_like_the_file(tmp_path):
    samples = tone_track(3, 3.0, 44100)
    path = write_audio(tmp_path / "x.wav", samples, 44100)
    from_file = decode_audio(path, sample_rate=SR)
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), sample_rate=SR), from_file)
    np.testing.assert_allclose(decode_audio((samples, 44100), sample_rate=SR), from_file, atol=1e-4)


@pytest.mark.parametrize(
    "content,reason",
    [(b"", "empty"), (b"this is not audio" * 300, "cannot decode"), (b"RIFF\x00\x00", "cannot decode")],
)
def test_bad_input_gets_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=reason):
        decode_audio(path, sample_rate=SR)
    if content:
        with pytest.raises(AudioDecodeError, match=reason):
            decode_audio(content, sample_rate=SR)


def test_silent_audio_is_refused(tmp_path):
    path = write_audio(tmp_path / "silence.flac", np.zeros((2, SR * 3), np.float32), SR)
    with pytest.raises(AudioDecodeError, match="silent"):
        decode_audio(path, sample_rate=SR)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(AudioDecodeError, match="no such file"):
        decode_audio(tmp_path / "nope.mp3", sample_rate=SR)


@pytest.mark.parametrize("name", ["t.mp3", "t.flac", "t.ogg", "t.m4a"])
def test_tags_are_read_across_formats(tmp_path, name):
    path = write_audio(tmp_path / name, tone_track(1, 1.0, 44100), 44100)
    tagged = mutagen.File(str(path), easy=True)
    if tagged.tags is None:
        tagged.add_tags()
    tagged["title"] = "Song"
    tagged["artist"] = "Band"
    tagged["album"] = "Record"
    tagged["genre"] = "Jazz"
    tagged["date"] = "1999-05-01"
    tagged["musicbrainz_trackid"] = "0a9b8c7d-0000-4000-8000-000000000001"
    tagged.save()
    tags = read_tags(path)
    assert (tags.title, tags.artist, tags.album, tags.genre, tags.year) == ("Song", "Band", "Record", "Jazz", 1999)
    assert tags.musicbrainz_track_id == "0a9b8c7d-0000-4000-8000-000000000001"


def test_untagged_or_unreadable_files_give_empty_tags(tmp_path):
    path = Path(tmp_path / "junk.mp3")
    path.write_bytes(b"junk")
    assert read_tags(path).title is None
