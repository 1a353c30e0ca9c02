"""The CPU front end (convolutions as matrix products) against transformers' own feature encoder."""

import copy

import numpy as np
import pytest
import torch

from mertsearch.encoder import frontend
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.frontend import MatmulFeatureEncoder, supported
from mertsearch.encoder.mert import MertEncoder
from tests.helpers import DISCERNING, tone_track, write_tiny_mert

KINDS = {
    "group norm, no bias (MERT-v1-95M)": ("mert", {}),
    "layer norm, bias (MERT-v1-330M form)": ("mert", {"feat_extract_norm": "layer", "conv_bias": True}),
    "data2vec (music2vec-v1)": ("data2vec", {}),
}


def _waveforms(seconds: float = 2.0) -> torch.Tensor:
    """Three windows of different loudness and a silent one: per-window statistics must stay apart."""
    tones = [tone_track(seed, seconds, 24000, channels=1)[0] * gain for seed, gain in ((0, 1.0), (1, 0.05), (2, 3.0))]
    return torch.from_numpy(np.stack([*tones, np.zeros_like(tones[0])]).astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_same_output_as_transformers_feature_encoder(tmp_path, kind):
    _, model = write_tiny_mert(tmp_path / "m", kind=KINDS[kind][0], overrides=KINDS[kind][1])
    reference = model.feature_extractor
    assert supported(reference)
    waveforms = _waveforms()
    with torch.inference_mode():
        expected = reference(waveforms)
        got = MatmulFeatureEncoder(copy.deepcopy(reference))(waveforms)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_in_bf16_close_to_fp32_on_pooled_vectors(tmp_path, norm):
    _, model = write_tiny_mert(tmp_path / "m", overrides={**DISCERNING, "feat_extract_norm": norm, "conv_bias": True})
    waveforms = _waveforms(5.0)[:3]
    with torch.inference_mode():
        expected = model(waveforms).last_hidden_state.mean(1)
        model.feature_extractor = MatmulFeatureEncoder(model.feature_extractor)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(waveforms).last_hidden_state.float().mean(1)
    assert float(torch.nn.functional.cosine_similarity(got, expected).min()) >= 0.9999


def test_a_front_end_it_does_not_know_is_left_to_transformers(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m")
    padded = copy.deepcopy(reference.feature_extractor)
    padded.conv_layers[3].conv.padding = (1,)
    assert not supported(padded)
    assert supported(reference.feature_extractor)


def test_the_encoder_without_it_gives_the_same_vectors(tmp_path, monkeypatch):
    """What a GPU runs (transformers' convolutions) against what a CPU runs, in the same process."""
    directory, _ = write_tiny_mert(tmp_path / "m")
    checkpoint = resolve_checkpoint(str(directory))
    windows = _waveforms().numpy()
    matmul = MertEncoder(checkpoint, 3, precision="fp32", batch_size=2)
    monkeypatch.setattr(frontend, "supported", lambda module: False)
    convolutions = MertEncoder(checkpoint, 3, precision="fp32", batch_size=2)
    assert matmul.matmul_front_end and not convolutions.matmul_front_end
    np.testing.assert_allclose(matmul.embed_windows(windows), convolutions.embed_windows(windows), atol=1e-5)
