"""Ingest with decoder workers: same vectors as the published recipe, hung and crashing decoders."""

import os
import signal
import time

import numpy as np
import pytest
import torch
import torchaudio
from transformers import Wav2Vec2FeatureExtractor

import mertsearch.indexer.reader as reader_module
from mertsearch import Catalog
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.mert import MertEncoder
from mertsearch.errors import InvalidArgumentError
from mertsearch.storage.store import from_blob
from tests.fixtures import write_tiny_mert

from .test_catalog import _assert_consistent

LAYER = 3


def _recipe_track_vector(path, model, extractor) -> np.ndarray:
    """MERT's published recipe, file by file: load, resample with T.Resample, the processor, the model
    with all hidden states, one 5 s window at a time; the track vector is the mean of the windows'
    normalised layer means (a short tail is dropped, a long one gets a window ending at the end)."""
    waveform, rate = torchaudio.load(str(path))
    audio = torchaudio.transforms.Resample(rate, 24000)(waveform.mean(dim=0)).numpy()
    window = 5 * 24000
    starts = list(range(0, len(audio) - window + 1, window))
    if len(audio) - (starts[-1] + window) >= 24000:
        starts.append(len(audio) - window)
    vectors = []
    for start in starts:
        inputs = extractor(audio[start : start + window], sampling_rate=24000, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[LAYER]
        mean = hidden.mean(dim=1)[0].numpy()
        vectors.append(mean / np.linalg.norm(mean))
    track = np.mean(vectors, axis=0)
    return track / np.linalg.norm(track)


def _stored_vector(cat: Catalog, path) -> np.ndarray:
    return from_blob(cat.store.track_by_path(str(path)).vector)


@pytest.mark.parametrize("decoders", [0, 2])
def test_track_vectors_match_the_published_recipe(tmp_path, music, decoders):
    directory, model = write_tiny_mert(tmp_path / "model")
    model.eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    with Catalog.create(tmp_path / "cat", model=str(directory), layer=LAYER) as cat:
        report = cat.index_paths([music], decoders=decoders)
        assert report.added == 6 and report.decoders == decoders and report.precision == "fp32"
        for path in sorted(music.rglob("*.*")):
            cosine = float(_stored_vector(cat, path) @ _recipe_track_vector(path, model, extractor))
            assert cosine > 0.9999, (path.name, cosine)


def test_workers_and_inline_decoding_store_the_same_vectors(tmp_path, tiny_model, music):
    vectors = {}
    for decoders in (0, 1, 3):
        with Catalog.create(tmp_path / f"cat{decoders}", model=str(tiny_model), layer=LAYER, batch_size=3) as cat:
            cat.index_paths([music], decoders=decoders)
            vectors[decoders] = {path: _stored_vector(cat, path) for path in sorted(music.rglob("*.*"))}
    for decoders in (1, 3):
        assert vectors[decoders].keys() == vectors[0].keys()
        for path, vector in vectors[0].items():
            np.testing.assert_allclose(vectors[decoders][path], vector, atol=1e-6)


def _misbehave_on(names: dict, real):
    """A reader that hangs or crashes (in the worker process) on files with the given names."""

    def read(path, *args, **kwargs):
        action = names.get(os.path.basename(path))
        if action == "hang":
            time.sleep(3600)
        if action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *args, **kwargs)

    return read


@pytest.mark.slow
def test_a_hung_or_crashing_decoder_fails_its_file_and_the_run_goes_on(tmp_path, tiny_model, music, monkeypatch):
    (music / "a.wav").rename(music / "hang.wav")
    (music / "b.flac").rename(music / "crash.flac")
    monkeypatch.setattr(
        reader_module,
        "stream_audio",
        _misbehave_on({"hang.wav": "hang", "crash.flac": "crash"}, reader_module.stream_audio),
    )
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=LAYER) as cat:
        started = time.monotonic()
        report = cat.index_paths([music], decoders=2, decode_timeout_s=3)
        assert time.monotonic() - started < 60
        reasons = {os.path.basename(f.path): f.reason for f in report.failed}
        assert "time limit" in reasons["hang.wav"]
        assert "crashed" in reasons["crash.flac"] and "signal 9" in reasons["crash.flac"]
        assert report.added == 4
        _assert_consistent(cat, 4)
        again = cat.index_paths([music], decoders=2, decode_timeout_s=3)  # not retried while unchanged
        assert again.skipped_failed == 2 and again.unchanged == 4


def test_precision_choices(tmp_path, tiny_model):
    checkpoint = resolve_checkpoint(str(tiny_model))
    windows = np.random.default_rng(0).standard_normal((3, 24000)).astype(np.float32)
    fp32 = MertEncoder(checkpoint, LAYER, precision="fp32")
    auto = MertEncoder(checkpoint, LAYER)
    assert auto.precision_report["chosen"] in ("fp32", "bf16") and auto.precision_report["why"]
    assert auto.model.config._attn_implementation == "sdpa"
    bf16 = MertEncoder(checkpoint, LAYER, precision="bf16")
    reference, reduced = fp32.embed_windows(windows)[:, 0], bf16.embed_windows(windows)[:, 0]
    cosine = np.sum(reference * reduced, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(reduced, axis=1))
    assert cosine.min() > 0.99 and not np.array_equal(reference, reduced)
    with pytest.raises(InvalidArgumentError, match="precision"):
        MertEncoder(checkpoint, LAYER, precision="int4")
    with pytest.raises(InvalidArgumentError, match="precision"):
        Catalog.create(tmp_path / "cat", model=str(tiny_model), precision="half")
