"""Sampled indexing: a few windows spread over each track, each decoded by seeking to it, embedded
exactly as the model embeds that stretch of the whole decoded track."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mertsearch import Catalog, CatalogMismatchError, InvalidArgumentError
from mertsearch.audio.decode import decode_audio
from mertsearch.cli import app
from mertsearch.config import WindowSettings
from mertsearch.storage.manifest import read_manifest
from tests.helpers import DISCERNING, SAMPLE_RATE, tone_track, write_audio, write_tiny_mert


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampled")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    write_audio(root / "music" / "long.flac", tone_track(1, 61, SAMPLE_RATE), SAMPLE_RATE)
    write_audio(root / "music" / "short.ogg", tone_track(2, 12, SAMPLE_RATE), SAMPLE_RATE)
    with Catalog.create(root / "cat", model=str(model), layer=2, sample=15) as cat:
        assert cat.index_paths([root / "music"], decoders=0).added == 2
    return root


def test_a_long_track_gets_the_sampled_windows_spread_over_it(sampled):
    with Catalog.open(sampled / "cat") as cat:
        track = cat.store.track_by_path(str(sampled / "music" / "long.flac"))
        times, vectors = cat.store.windows_of([track.id])[track.id]
        assert track.duration == pytest.approx(61, abs=0.05)  # the whole track's length
        np.testing.assert_allclose(times[:, 0], [56 / 6, 56 / 2, 56 * 5 / 6], atol=1e-3)
        np.testing.assert_allclose(times[:, 1] - times[:, 0], 5.0)
        # The same stretches cut from the whole decoded track, through the model: the same vectors.
        rate = cat.encoder.sample_rate
        whole = decode_audio(sampled / "music" / "long.flac", sample_rate=rate)
        cuts = np.stack([whole[round(start * rate) : round(start * rate) + 5 * rate] for start in times[:, 0]])
        expected = cat.encoder.embed_windows(cuts)[:, 0]
        cosines = (
            np.sum(expected * vectors, axis=1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(vectors, axis=1)
        )
        assert cosines.min() > 0.999


def test_a_track_no_longer_than_the_sample_is_embedded_whole(sampled):
    with Catalog.open(sampled / "cat") as cat:
        track = cat.store.track_by_path(str(sampled / "music" / "short.ogg"))
        times, _ = cat.store.windows_of([track.id])[track.id]
        np.testing.assert_allclose(times[:, 0], [0, 5, 7], atol=1e-3)  # 12 s: two windows and the tail


def test_the_sample_is_recorded_and_a_different_one_refused(sampled):
    assert read_manifest(sampled / "cat").windows.sample_s == 15
    with pytest.raises(CatalogMismatchError, match=r"windows.sample_s: 15.0 in the catalog, 30.0 asked"):
        Catalog.open(sampled / "cat", sample=30)
    with pytest.raises(InvalidArgumentError, match="at least one window"):
        WindowSettings(sample_s=2)


def test_the_command_line_says_a_clip_finds_only_the_sampled_parts(sampled, tmp_path):
    runner = CliRunner()
    info = runner.invoke(app, ["info", "--catalog", str(sampled / "cat"), "--json"])
    assert json.loads(info.stdout)["sample_s"] == 15
    first = round(56 / 6 * SAMPLE_RATE)  # where the first sampled window starts
    clip = write_audio(
        tmp_path / "clip.wav", tone_track(1, 61, SAMPLE_RATE)[:, first : first + 10 * SAMPLE_RATE], SAMPLE_RATE
    )
    found = runner.invoke(app, ["search", str(clip), "--catalog", str(sampled / "cat"), "--json"])
    assert found.exit_code == 0, found.output
    assert "a clip finds a track only where it matches one of those parts" in found.stderr
    best = json.loads(found.stdout)["results"][0]
    assert best["path"].endswith("long.flac") and 0 <= best["offset"] <= best["duration"]


def test_index_sample_on_the_command_line(tmp_path, tiny_model):
    write_audio(tmp_path / "music" / "a.flac", tone_track(3, 40, SAMPLE_RATE), SAMPLE_RATE)
    done = CliRunner().invoke(
        app,
        ["index", str(tmp_path / "music"), "--catalog", str(tmp_path / "cat"), "--model", str(tiny_model),
         "--layer", "2", "--sample", "10", "--json"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.store.counts()["windows"] == 2 and cat.info()["sample_s"] == 10


def test_the_http_answer_notes_the_sampling(sampled, tmp_path):
    from fastapi.testclient import TestClient

    from mertsearch.api.app import Settings, create_app

    clip = write_audio(tmp_path / "clip.wav", tone_track(2, 12, SAMPLE_RATE), SAMPLE_RATE)
    with TestClient(create_app(Settings(catalog=sampled / "cat"))) as client:
        answer = client.post("/search", files={"file": ("clip.wav", clip.read_bytes())}, data={"k": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] and "only where it matches one of those parts" in answer.json()["note"]
