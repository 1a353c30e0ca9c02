"""The encoder against transformers' own HubertModel and feature extractor, run directly."""

import json

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor

from mertsearch.encoder.checkpoint import load_model, resolve_checkpoint
from mertsearch.encoder.mert import MertEncoder
from mertsearch.errors import InvalidArgumentError, ModelLoadError
from tests.helpers import tone_track, write_tiny_mert


def _windows(n: int = 3, seconds: float = 5.0) -> np.ndarray:
    return np.stack([tone_track(seed, seconds, 24000, channels=1)[0] for seed in range(n)])


def _fp32_encoder(directory, layers, **options) -> MertEncoder:
    """The engine's encoder in fp32, which the references here compute in (whatever "auto" would choose)."""
    return MertEncoder(resolve_checkpoint(str(directory)), layers, precision="fp32", **options)


def _reference_layer(model, windows: np.ndarray, layer: int) -> np.ndarray:
    with torch.inference_mode():
        hidden = model(torch.from_numpy(windows), output_hidden_states=True).hidden_states
    return hidden[layer].mean(dim=1).numpy()


@pytest.mark.parametrize("stable_layer_norm", [False, True], ids=["post-LN (v1-95M)", "pre-LN (v1-330M)"])
@pytest.mark.parametrize("layer", [0, 1, 3, 4])
def test_layer_vectors_equal_hubert_hidden_states(tmp_path, stable_layer_norm, layer):
    directory, reference = write_tiny_mert(tmp_path / "m", overrides={"do_stable_layer_norm": stable_layer_norm})
    encoder = _fp32_encoder(directory, layer, batch_size=2)
    windows = _windows()
    np.testing.assert_allclose(
        encoder.embed_windows(windows)[:, 0], _reference_layer(reference, windows, layer), atol=1e-5
    )


@pytest.mark.parametrize(
    "kind,overrides",
    [("hubert-v0", {}), ("mert", {"sample_rate": 16000}), ("data2vec", {})],
    ids=["MERT-v0 (HubertModel form)", "MERT-v0 (MERTModel form)", "music2vec (Data2Vec)"],
)
@pytest.mark.parametrize("layer", [0, 2, 4])
def test_16khz_models_equal_their_transformers_class(tmp_path, kind, overrides, layer):
    directory, reference = write_tiny_mert(
        tmp_path / "m", kind=kind, overrides=overrides, preprocessor={"do_normalize": True, "sampling_rate": 16000}
    )
    encoder = _fp32_encoder(directory, layer, batch_size=2)
    assert encoder.sample_rate == 16000
    windows = _windows(3, seconds=2.0)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    inputs = extractor(list(windows), sampling_rate=16000, return_tensors="np").input_values
    np.testing.assert_allclose(
        encoder.embed_windows(windows)[:, 0], _reference_layer(reference, inputs, layer), atol=1e-4
    )


@pytest.mark.parametrize("stable_layer_norm", [False, True], ids=["post-LN", "pre-LN"])
def test_every_layer_in_one_pass_equals_hubert_hidden_states(tmp_path, stable_layer_norm):
    directory, reference = write_tiny_mert(tmp_path / "m", overrides={"do_stable_layer_norm": stable_layer_norm})
    encoder = _fp32_encoder(directory, (1, 3), keep_all=True)
    assert encoder.capture == (0, 1, 2, 3, 4) and len(encoder.model.encoder.layers) == 4
    windows = _windows(2)
    got = encoder.embed_windows(windows)
    for layer in range(5):
        np.testing.assert_allclose(got[:, layer], _reference_layer(reference, windows, layer), atol=1e-5)


def test_several_layers_capture_only_those(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m")
    encoder = _fp32_encoder(directory, (3, 1))
    assert encoder.capture == (1, 3) and len(encoder.model.encoder.layers) == 3
    windows = _windows(2)
    got = encoder.embed_windows(windows)
    np.testing.assert_allclose(got[:, 0], _reference_layer(reference, windows, 1), atol=1e-5)
    np.testing.assert_allclose(got[:, 1], _reference_layer(reference, windows, 3), atol=1e-5)


def test_only_the_layers_up_to_the_chosen_one_run(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")
    encoder = _fp32_encoder(directory, 2)
    assert len(encoder.model.encoder.layers) == 2
    assert encoder.num_layers == 4


def test_preprocessing_follows_the_checkpoint_like_transformers_feature_extractor(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m", preprocessor={"do_normalize": True})
    encoder = _fp32_encoder(directory, 3)
    windows = _windows(2)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    inputs = extractor(list(windows), sampling_rate=24000, return_tensors="np").input_values
    np.testing.assert_allclose(encoder.embed_windows(windows)[:, 0], _reference_layer(reference, inputs, 3), atol=1e-4)


def test_safetensors_weights_load_too(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m", safetensors=True)
    encoder = _fp32_encoder(directory, 4)
    windows = _windows(1)
    np.testing.assert_allclose(encoder.embed_windows(windows)[:, 0], _reference_layer(reference, windows, 4), atol=1e-5)


def test_batching_does_not_change_results(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")
    checkpoint = resolve_checkpoint(str(directory))
    windows = _windows(5)
    one = MertEncoder(checkpoint, 3, batch_size=1, precision="fp32").embed_windows(windows)
    many = MertEncoder(checkpoint, 3, batch_size=5, precision="fp32").embed_windows(windows)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_weights_saved_under_a_prefix_load(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m")
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    torch.save({f"mert_model.{k}": v for k, v in state.items()}, directory / "pytorch_model.bin")
    encoder = _fp32_encoder(directory, 2)
    windows = _windows(1)
    np.testing.assert_allclose(encoder.embed_windows(windows)[:, 0], _reference_layer(reference, windows, 2), atol=1e-5)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    del state["encoder.layers.0.attention.k_proj.weight"]
    state["label_embs_concat"] = torch.zeros(3)
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as raised:
        load_model(resolve_checkpoint(str(directory)))
    assert "missing keys: encoder.layers.0.attention.k_proj.weight" in str(raised.value)
    assert "unexpected keys: label_embs_concat" in str(raised.value)


def test_pickled_code_in_weights_is_refused(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": Payload()}, directory / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_model(resolve_checkpoint(str(directory)))


@pytest.mark.parametrize("field", ["feature_extractor_cqt", "deepnorm"])
def test_unimplemented_features_are_refused(tmp_path, field):
    directory, _ = write_tiny_mert(tmp_path / "m", overrides={field: True})
    with pytest.raises(ModelLoadError, match=field):
        load_model(resolve_checkpoint(str(directory)))


def test_other_model_types_are_refused(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="model_type 'bert'; expected one of data2vec-audio, hubert, mert_model"):
        load_model(resolve_checkpoint(str(directory)))


def test_layer_out_of_range(tmp_path):
    directory, _ = write_tiny_mert(tmp_path / "m")
    with pytest.raises(InvalidArgumentError, match="between 0 and 4"):
        _fp32_encoder(directory, 5)


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match="unknown model"):
        resolve_checkpoint("no-such-model")


def test_unreachable_hub_says_how_to_supply_weights(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError) as raised:
        resolve_checkpoint("mert-v1-95m")
    message = str(raised.value)
    assert "m-a-p/MERT-v1-95M" in message and "--model DIR" in message and "--revision 12af15fef9d0" in message


def test_registry_model_found_in_the_hub_cache_without_network(monkeypatch, tmp_path):
    import huggingface_hub

    snapshot, _ = write_tiny_mert(tmp_path / "snapshots" / "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5")
    calls = []

    def cached_only(repo_id, *, revision, allow_patterns, local_files_only=False):
        calls.append((repo_id, revision, local_files_only))
        if not local_files_only:
            raise AssertionError("must not reach the network when the cache has the files")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached_only)
    checkpoint = resolve_checkpoint("mert-v1-95m")
    assert calls == [("m-a-p/MERT-v1-95M", "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5", True)]
    assert checkpoint.revision == "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5" and checkpoint.source == "mert-v1-95m"
