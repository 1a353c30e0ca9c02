"""The weight-free spectral baseline: what its features hold, and a catalog built with it."""

import numpy as np
import pytest
import torch
import torchaudio

from mertsearch import Catalog
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.mert import open_encoder
from tests.helpers import melody_track, tone_track, write_audio

SR = 24000


@pytest.fixture(scope="module")
def encoder():
    return open_encoder(resolve_checkpoint("spectral"), [0])


def _sine(freq: float, seconds: float = 5.0, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def test_log_mel_part_is_torchaudio_mel_statistics_standardised(encoder):
    window = tone_track(1, 5.0, SR, channels=1)
    vector = encoder.embed_windows(window)[0, 0]
    assert vector.shape == (190,)
    mel = torch.log(
        torchaudio.transforms.MelSpectrogram(SR, n_fft=2048, hop_length=512, n_mels=64)(torch.from_numpy(window)) + 1e-6
    )
    means = mel.mean(dim=2)[0]
    expected = (means - means.mean()) / (means - means.mean()).std() / 8  # 64 values: scaled by 1/sqrt(64)
    np.testing.assert_allclose(vector[:64], expected.numpy(), atol=1e-4)


def test_chroma_of_a_sine_peaks_at_its_pitch_class(encoder):
    chroma_means = encoder.embed_windows(np.stack([_sine(440.0), _sine(261.63)]))[:, 0, 166:178]
    assert chroma_means[0].argmax() == 9  # A
    assert chroma_means[1].argmax() == 0  # C


def test_level_does_not_change_the_vector(encoder):
    window = tone_track(2, 5.0, SR, channels=1)
    loud, quiet = encoder.embed_windows(np.stack([window[0], window[0] * 0.1]))[:, 0]
    cosine = loud @ quiet / (np.linalg.norm(loud) * np.linalg.norm(quiet))
    assert cosine > 0.999


def test_a_spectral_catalog_finds_excerpts_and_reopens_without_a_model_argument(tmp_path):
    for n in range(6):
        write_audio(tmp_path / "music" / f"{n}.flac", melody_track(300 + n, 20, 44100), 44100)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        assert cat.index_paths([tmp_path / "music"]).added == 6
        assert cat.manifest.encoder.architecture == "spectral" and cat.manifest.encoder.dim == 190
    with Catalog.open(tmp_path / "cat") as cat:
        clip = (melody_track(303, 20, 44100)[:, 5 * 44100 : 15 * 44100], 44100)
        assert cat.search(clip, k=3)[0].path.endswith("3.flac")
        report = cat.evaluate(excerpts=4, seconds=8, seed=0)
        assert report["identification"]["degradations"]["clean"]["recall_at_1"] == 1.0
