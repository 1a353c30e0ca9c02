"""CLaMP 3's towers (mertsearch.encoder.clamp3) against the published recipe written out here, on a
tiny random checkpoint in the published layout; what they refuse; and MERT's window features as
CLaMP 3's preprocessing computes them (tests/clamp3_checkpoint.py), run on a tiny MERT."""

from __future__ import annotations

import hashlib
import json
import types

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

from mertsearch.encoder.checkpoint import load_model, resolve_checkpoint
from mertsearch.encoder.clamp3 import MAX_TEXT_CHARS, load_clamp3
from mertsearch.errors import InvalidArgumentError, ModelLoadError
from tests.clamp3_checkpoint import WEIGHTS_FILE, make_clamp3_checkpoint, reference_window_features
from tests.helpers import write_tiny_mert

HIDDEN, LAYERS = 32, 2  # make_clamp3_checkpoint's defaults
SEGMENT = 128  # MAX_TEXT_LENGTH and MAX_AUDIO_LENGTH upstream


@pytest.fixture(scope="module")
def clamp3_dir(tmp_path_factory):
    return make_clamp3_checkpoint(tmp_path_factory.mktemp("clamp3") / "clamp3")


@pytest.fixture(scope="module")
def engine(clamp3_dir):
    return load_clamp3(clamp3_dir)


@pytest.fixture(scope="module")
def reference(clamp3_dir):
    """CLaMP3Model's text and audio towers composed by hand from transformers' classes, with eager
    attention, each loaded strictly from its slice of the checkpoint's state dict."""
    state = torch.load(clamp3_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)["model"]
    text_config = XLMRobertaConfig.from_pretrained(clamp3_dir / "text", attn_implementation="eager")
    audio_config = BertConfig(
        vocab_size=1,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=max(1, HIDDEN // 64),
        intermediate_size=HIDDEN * 4,
        max_position_embeddings=SEGMENT,
        attn_implementation="eager",
    )
    parts = {
        "text_model": XLMRobertaModel(text_config),
        "text_proj": torch.nn.Linear(HIDDEN, HIDDEN),
        "audio_model": BertModel(audio_config),
        "audio_proj": torch.nn.Linear(HIDDEN, HIDDEN),
    }
    for name, part in parts.items():
        part.load_state_dict({k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")})
        part.eval()
    return types.SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(clamp3_dir / "text"), **parts)


def recipe_vector(model, proj, data: torch.Tensor, pad, *, embeds: bool) -> np.ndarray:
    """extract_clamp3.py's get_global branch: segments of 128 (the last = the last 128), padded with a
    1/0 mask; last hidden state -> masked mean -> projection; segments weighted by the positions they add."""
    segments = [data[i : i + SEGMENT] for i in range(0, len(data), SEGMENT)]
    segments[-1] = data[-SEGMENT:]
    vectors = []
    for segment in segments:
        mask = torch.cat([torch.ones(len(segment)), torch.zeros(SEGMENT - len(segment))])
        padding = torch.full((SEGMENT - len(segment), *segment.shape[1:]), pad, dtype=segment.dtype)
        inputs = torch.cat([segment, padding])[None]
        with torch.no_grad():
            kwargs = {"inputs_embeds": inputs} if embeds else {"input_ids": inputs}
            hidden = model(**kwargs, attention_mask=mask[None])["last_hidden_state"]
            mask = mask[None, :, None]
            vectors.append(proj((hidden * mask).sum(dim=1) / mask.sum(dim=1)))
    full, rest = len(data) // SEGMENT, len(data) % SEGMENT
    weights = torch.tensor([SEGMENT] * full + ([rest] if rest else [])).view(-1, 1)
    vector = (torch.cat(vectors) * weights).sum(dim=0) / weights.sum()
    return (vector / vector.norm()).numpy()


def recipe_text(reference, text: str) -> np.ndarray:
    """The .txt branch: distinct non-empty lines (first occurrences, in order) joined by </s>, tokenised."""
    lines = []
    for line in text.split("\n"):
        if line and line not in lines:
            lines.append(line)
    tokenizer = reference.tokenizer
    ids = tokenizer(tokenizer.sep_token.join(lines), return_tensors="pt")["input_ids"][0]
    return recipe_vector(reference.text_model, reference.text_proj, ids, tokenizer.pad_token_id, embeds=False)


def recipe_audio(reference, features: np.ndarray) -> np.ndarray:
    """The .npy branch: a zero vector before the first window and after the last."""
    rows = torch.tensor(features, dtype=torch.float32)
    zero = torch.zeros(1, rows.shape[1])
    return recipe_vector(reference.audio_model, reference.audio_proj, torch.cat([zero, rows, zero]), 0.0, embeds=True)


SHORT = "a quiet piano song"
LONG = " ".join(["loud electric guitar", "café chanson", "тихая гитара", "hello world xyz 42"] * 12)
LINES = "a quiet piano song\nмузыка песня\n\na quiet piano song\n音乐 钢琴\nピアノ の 歌"


def test_text_tower_matches_the_recipe(engine, reference):
    assert len(reference.tokenizer(LONG)["input_ids"]) > 2 * SEGMENT  # three segments, the last overlapping
    texts = [SHORT, LONG, LINES]
    got = engine.text_vectors(texts)
    assert got.shape == (3, engine.dim) and got.dtype == np.float32
    expected = np.stack([recipe_text(reference, text) for text in texts])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # A repeated line counts once, wherever it repeats.
    deduplicated = "a quiet piano song\nмузыка песня\n音乐 钢琴\nピアノ の 歌"
    np.testing.assert_allclose(engine.text_vectors([deduplicated])[0], got[2], atol=1e-6)
    assert engine.text_vectors([]).shape == (0, engine.dim)


@pytest.mark.parametrize("windows", [3, 126, 300])  # one segment, exactly one full one, three
def test_audio_tower_matches_the_recipe(engine, reference, windows):
    features = np.random.default_rng(windows).normal(size=(windows, HIDDEN)).astype(np.float32)
    got = engine.audio_vector(features)
    assert got.shape == (engine.dim,) and got.dtype == np.float32
    np.testing.assert_allclose(got, recipe_audio(reference, features), atol=1e-5)
    assert abs(np.linalg.norm(got) - 1) < 1e-6


def test_audio_vectors_batch_as_one_by_one(engine):
    rng = np.random.default_rng(7)
    tracks = [rng.normal(size=(n, HIDDEN)) for n in (1, 130, 40)]
    batch = engine.audio_vectors(tracks)
    np.testing.assert_allclose(batch, np.stack([engine.audio_vector(t) for t in tracks]), atol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("  \n\t \n", "empty"),
        ("x" * (MAX_TEXT_CHARS + 1), "limit"),
        ("ᚠᚢᚦ ᚨᚱᚲ ᚷᚹ", "not in a language the text model knows"),  # runes: all <unk>
        ("Η μουσική ΑΒΓ song", "not in a language"),  # mostly Greek, which the tiny vocabulary lacks
    ],
)
def test_bad_text_is_refused_before_any_is_encoded(engine, monkeypatch, text, message):
    monkeypatch.setattr(engine, "_encode", lambda *a, **k: pytest.fail("encoded before checking"))
    with pytest.raises(InvalidArgumentError, match=message):
        engine.text_vectors([SHORT, text])


def test_text_limits(engine):
    assert engine.text_vectors(["x" * MAX_TEXT_CHARS]).shape == (1, engine.dim)
    engine.text_vectors(["ᚠᚢᚦ a quiet piano song"])  # a few unknown words among known ones pass
    with pytest.raises(InvalidArgumentError, match="list of texts"):
        engine.text_vectors(SHORT)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((3, HIDDEN - 1)), "expected"),
        (np.zeros((0, HIDDEN)), "no windows"),
        (np.zeros(HIDDEN), "expected"),
        (np.full((2, HIDDEN), np.nan), "NaN"),
    ],
)
def test_bad_features_are_refused(engine, features, message):
    with pytest.raises(InvalidArgumentError, match=message):
        engine.audio_vector(features)


def test_loads_from_a_directory_and_from_the_environment(clamp3_dir, engine, monkeypatch, tmp_path):
    assert engine.dim == engine.feature_dim == HIDDEN
    assert engine.source == str(clamp3_dir.resolve()) and engine.revision is None
    assert engine.weights_sha256 == hashlib.sha256((clamp3_dir / WEIGHTS_FILE).read_bytes()).hexdigest()
    monkeypatch.setenv("MERTSEARCH_CLAMP3", str(clamp3_dir))
    from_env = load_clamp3()
    assert from_env.directory == clamp3_dir.resolve()
    np.testing.assert_array_equal(from_env.text_vectors([SHORT]), engine.text_vectors([SHORT]))
    # Any single weights_clamp3_*.pth will do.
    other = make_clamp3_checkpoint(tmp_path / "other", seed=1)
    (other / WEIGHTS_FILE).rename(other / "weights_clamp3_c2_other.pth")
    assert not np.allclose(load_clamp3(other).text_vectors([SHORT]), engine.text_vectors([SHORT]))


def _drop(key):
    return lambda state: state.pop(key)


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("audio_proj.weight", torch.zeros(HIDDEN, HIDDEN - 1)), r"audio_proj.weight \(32, 31\) vs \(32, 32\)"),
        (_set("audio_proj.bias", torch.zeros(HIDDEN + 1)), r"audio_proj.bias \(33,\) vs \(32,\)"),
        (_drop("audio_model.encoder.layer.1.output.dense.bias"), "missing keys: audio_model.encoder.layer.1.output"),
        (_drop("text_model.pooler.dense.weight"), "missing keys: text_model.pooler.dense.weight"),
        (_set("text_model.extra.weight", torch.zeros(2)), "unexpected keys: text_model.extra.weight"),
    ],
)
def test_a_checkpoint_of_the_wrong_shape_is_refused(tmp_path, edit, message):
    directory = make_clamp3_checkpoint(tmp_path / "bad", edit=edit)
    with pytest.raises(ModelLoadError, match="wrong shape") as error:
        load_clamp3(directory)
    assert error.match(message)


def test_buffers_older_transformers_saved_are_accepted(tmp_path):
    edit = _set("text_model.embeddings.position_ids", torch.arange(514)[None])
    load_clamp3(make_clamp3_checkpoint(tmp_path / "old", edit=edit))


def test_unreadable_or_incomplete_directories_are_refused(clamp3_dir, tmp_path):
    broken = make_clamp3_checkpoint(tmp_path / "broken")
    (broken / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_clamp3(broken)
    (broken / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="weights_clamp3_"):
        load_clamp3(broken)
    with pytest.raises(ModelLoadError, match="no CLaMP 3 directory"):
        load_clamp3(tmp_path / "nowhere")
    textless = tmp_path / "textless"
    textless.mkdir()
    (textless / WEIGHTS_FILE).symlink_to(clamp3_dir / WEIGHTS_FILE)
    with pytest.raises(ModelLoadError, match="config.json"):
        load_clamp3(textless)


def test_a_text_model_other_than_xlm_roberta_is_refused(tmp_path):
    directory = make_clamp3_checkpoint(tmp_path / "bert")
    config = json.loads((directory / "text" / "config.json").read_text())
    (directory / "text" / "config.json").write_text(json.dumps(config | {"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not an XLM-RoBERTa config"):
        load_clamp3(directory)


def test_without_the_hub_the_error_says_how_to_download(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("MERTSEARCH_CLAMP3", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    with pytest.raises(ModelLoadError, match="hf download sander-wood/clamp3 weights_clamp3_saas_"):
        load_clamp3()


# MERT's window features, the audio tower's input (tests/clamp3_checkpoint.py has the recipe).


@pytest.fixture(scope="module")
def tiny_mert(tmp_path_factory):
    directory, _ = write_tiny_mert(tmp_path_factory.mktemp("mert") / "tiny-mert")
    return load_model(resolve_checkpoint(str(directory)))


@pytest.mark.parametrize(("seconds", "windows"), [(12.5, 3), (10.4, 2), (15.0, 3), (0.5, 0)])
def test_reference_window_features(tiny_mert, engine, seconds, windows):
    rate = 24000
    samples = np.random.default_rng(3).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    features = reference_window_features(tiny_mert, samples, rate)
    assert features.shape == (windows, tiny_mert.config.hidden_size) and features.dtype == np.float32
    if not windows:
        return
    # The last window, as long as it is (2.5 s of 12.5 s: not padded), from the whole track's normalisation.
    normalised = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    with torch.inference_mode():
        window = torch.from_numpy(normalised[(windows - 1) * 5 * rate : windows * 5 * rate])
        states = tiny_mert(window[None], output_hidden_states=True)
    last = torch.stack(states.hidden_states).mean(dim=2)[:, 0].mean(dim=0).numpy()
    np.testing.assert_allclose(features[-1], last, atol=1e-5)
    # A gain and an offset on the whole track change nothing; the features feed the audio tower.
    np.testing.assert_allclose(reference_window_features(tiny_mert, 3 * samples + 0.2, rate), features, atol=1e-4)
    assert engine.audio_vector(features).shape == (engine.dim,)
