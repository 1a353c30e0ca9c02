"""Ingest with decoder workers: same vectors as the published recipe, hung and crashing decoders."""

import os
import signal
import time

import numpy as np
import pytest
from transformers import Wav2Vec2FeatureExtractor

import mertsearch.indexer.reader as reader_module
from mertsearch import Catalog
from mertsearch.storage.store import from_blob
from tests.helpers import assert_consistent, recipe_track_vector, write_tiny_mert

LAYER = 3


def _stored_vector(cat: Catalog, path) -> np.ndarray:
    return from_blob(cat.store.track_by_path(str(path)).vector)


@pytest.mark.parametrize("decoders", [0, 2])
def test_track_vectors_match_the_published_recipe(tmp_path, music, decoders):
    directory, model = write_tiny_mert(tmp_path / "model")
    model.eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    with Catalog.create(tmp_path / "cat", model=str(directory), layer=LAYER, precision="fp32") as cat:
        report = cat.index_paths([music], decoders=decoders)
        assert report.added == 6 and report.decoders == decoders and report.precision == "fp32"
        for path in sorted(music.rglob("*.*")):
            cosine = float(_stored_vector(cat, path) @ recipe_track_vector(path, model, extractor, LAYER))
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
        assert_consistent(cat, 4)
        again = cat.index_paths([music], decoders=2, decode_timeout_s=3)  # not retried while unchanged
        assert again.skipped_failed == 2 and again.unchanged == 4
