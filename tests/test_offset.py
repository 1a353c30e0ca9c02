"""Where a clip starts in the track it comes from (``offset``), at the default windows (5 s every 5 s).

Clips are cut from generated tunes at known starts between window starts, as a listener's
recording would begin anywhere; the cut is the reference.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.cli import app
from mertsearch.client import Client
from tests.helpers import DISCERNING, SAMPLE_RATE, cli, melody_track, screen, write_audio, write_tiny_mert

from .servers import running

SR = SAMPLE_RATE
SEEDS = (300, 301, 302)
SECONDS = 40
CUTS = (1.3, 7.7, 13.1, 16.45, 21.3, 24.05, 28.6)


def _catalog(root, **settings):
    for seed in SEEDS:
        path = root / "music" / f"{seed}.flac"
        if not path.exists():
            write_audio(path, melody_track(seed, SECONDS, SR), SR)
    with Catalog.create(root / "cat", **settings) as cat:
        assert cat.index_paths([root / "music"], decoders=0).added == 3
    return root / "cat", root / "music"


@pytest.fixture(scope="module")
def spectral(tmp_path_factory):
    """Three generated 40 s tunes indexed with the spectral encoder: (catalog directory, folder)."""
    return _catalog(tmp_path_factory.mktemp("offset-spectral"), model="spectral")


@pytest.fixture(scope="module")
def discerning(tmp_path_factory):
    """The same tunes with a discerning tiny MERT."""
    root = tmp_path_factory.mktemp("offset-mert")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    return _catalog(root, model=str(model), layer=2)


def _clip(seed: int, cut: float, seconds: float) -> tuple[np.ndarray, int]:
    return melody_track(seed, SECONDS, SR)[:, round(cut * SR) : round((cut + seconds) * SR)], SR


def _errors(directory, seconds: float) -> list[float | None]:
    """How far each clip's offset is from its cut; None where the first result is another tune."""
    errors = []
    with Catalog.open(directory) as cat:
        for seed in SEEDS:
            for cut in CUTS:
                best = cat.search(_clip(seed, cut, seconds), k=2)[0]
                errors.append(abs(best.offset - cut) if best.path.endswith(f"{seed}.flac") else None)
    return errors


@pytest.mark.parametrize("seconds", [8.0, 10.0, 12.0])
def test_clips_cut_between_window_starts_are_placed_within_half_a_second(spectral, seconds):
    # Placed by their best window pair, these clips were 0.5-1.4 s off in the median and up to
    # 3.4 s off; the probe window and the fit between window starts bring the median under 0.3 s
    # and leave no clip a second off.
    errors = _errors(spectral[0], seconds)
    assert None not in errors
    assert np.median(errors) <= 0.3 and max(errors) <= 1.0, errors


def test_a_tiny_mert_places_clips_no_worse(discerning):
    # A tiny random model's window vectors change little and unevenly with a shift, so it places
    # clips less sharply than the spectral features. Placed by their best window pair, a third of
    # these clips came within a second of their cut, and the median was 1.1 s.
    errors = [error for seconds in (8.0, 10.0, 12.0) for error in _errors(discerning[0], seconds) if error is not None]
    assert len(errors) >= 36, errors  # of 63 clips, found first
    assert np.mean(np.array(errors) <= 1.0) >= 0.5 and np.median(errors) <= 1.0, errors


def test_a_sampled_catalog_places_a_clip_that_covers_a_sampled_window(tmp_path):
    directory, _ = _catalog(tmp_path, model="spectral", sample=15)
    with Catalog.open(directory) as cat:
        track = cat.store.track_by_path(str(tmp_path / "music" / "301.flac"))
        times, _ = cat.store.windows_of([track.id])[track.id]
        middle = float(times[1, 0])  # of three windows spread over the tune
        # Where the clip's windows line up with the sampled window on both sides of its start, the
        # fit places it; where on one side only (its last window just past it), that alignment does.
        for cut, within in ((middle - 1.3, 0.5), (middle - 3.6, 0.5), (middle - 4.4, 1.0)):
            best = cat.search(_clip(301, cut, 10), k=1)[0]
            assert best.path.endswith("301.flac") and best.offset == pytest.approx(cut, abs=within), (cut, best)


def test_whole_track_mode_and_the_probe_window(spectral):
    directory, _ = spectral
    with Catalog.open(directory) as cat:
        clip = _clip(301, 16.45, 10)
        best = cat.search(clip, k=1, mode="tracks")[0]
        assert best.path.endswith("301.flac") and best.offset == pytest.approx(16.45, abs=1.0)
        # The probe starts half a hop in (to a whole frame of the encoder: 512 samples at 24 kHz); it
        # is the encoder's vector of that stretch, and takes no part in the clip's own vectors.
        with_probe, plain = cat.embed(clip, probe=True), cat.embed(clip)
        assert plain.probes is None
        start = 117 * 512 / 24000
        np.testing.assert_allclose(with_probe.probes.starts, [start])
        np.testing.assert_allclose(with_probe.probes.ends, [start + 5])
        np.testing.assert_array_equal(with_probe.vector, plain.vector)
        np.testing.assert_array_equal(with_probe.window_vectors, plain.window_vectors)
        stretch = cat.embed((clip[0][:, round(start * SR) : round((start + 5) * SR)], SR)).window_vectors[0]
        assert float(stretch @ with_probe.probes.vectors[0]) > 0.999


def test_similar_tracks_have_no_offset(spectral):
    directory, music = spectral
    with Catalog.open(directory) as cat:
        for mode in ("tracks", "segments"):
            assert [r.offset for r in cat.similar(music / "300.flac", k=2, mode=mode)] == [None, None]


def test_offset_in_the_command_line_json_and_table(spectral, tmp_path):
    directory, music = spectral
    clip = write_audio(tmp_path / "clip.wav", _clip(302, 21.3, 10)[0], SR)
    runner = CliRunner()
    found = runner.invoke(app, ["search", str(clip), "--catalog", str(directory), "-k", "2", "--json"])
    assert found.exit_code == 0, found.output
    best = json.loads(found.stdout)["results"][0]
    assert best["path"].endswith("302.flac") and best["offset"] == pytest.approx(21.3, abs=1.0)
    minutes, seconds = divmod(best["offset"], 60)
    table = "\n".join(screen("search", clip, "--catalog", directory, "-k", 1))
    assert "clip at" in table and f"{int(minutes)}:{seconds:04.1f}" in table
    piped = cli("search", clip, "--catalog", directory, "-k", 1).stdout.split("\t")
    assert piped[3] == f"{int(minutes)}:{seconds:04.1f}" and piped[4] == best["path"] + "\n"
    similar = runner.invoke(app, ["similar", str(music / "302.flac"), "--catalog", str(directory), "--json"])
    assert [r["offset"] for r in json.loads(similar.stdout)["results"]] == [None, None]


def test_offset_in_the_http_json(spectral, tmp_path):
    directory, _ = spectral
    clip = write_audio(tmp_path / "clip.flac", _clip(300, 21.3, 10)[0], SR)
    with running(Settings(catalog=directory)) as url, Client(url) as client:
        best = client.search(clip, k=1)[0]
        assert best["path"].endswith("300.flac") and best["offset"] == pytest.approx(21.3, abs=1.0)
        assert [r["offset"] for r in client.similar(best["track_id"], k=2)] == [None, None]
