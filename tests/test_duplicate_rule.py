"""Files of one recording linked by their aligned windows under a rule fitted on each catalog:
re-encodes, resampled and trimmed copies are linked, distinct tunes of one length are not; repair
relinks a catalog both ways and a second repair changes nothing; eval measures it."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from torchcodec.decoders import AudioDecoder
from torchcodec.encoders import AudioEncoder
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.cli import app
from mertsearch.indexer.duplicates import (
    BY_COPIES,
    BY_DISTINCT,
    BY_FLOOR,
    BY_SMALL,
    COPY_MARGIN,
    MARGIN,
    MAX_DISTANCE,
    META_KEY,
    MIN_FIT_TRACKS,
    SMALL_CATALOG_DISTANCE,
    CopyDistances,
    DuplicateRule,
    Windows,
    aligned_distance,
)
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, synthetic_track, write_audio, write_tiny_mert

SECONDS = 16  # every tune is as long as the others: only the windows can tell them apart

# name -> (suffix, bit rate, sample rate, seconds cut from the start)
COPIES = {
    "mp3": ("mp3", 128_000, None, 0.0),
    "mp3-192": ("mp3", 192_000, None, 0.0),
    "aac": ("m4a", 128_000, None, 0.0),
    "opus": ("opus", 96_000, 48_000, 0.0),  # Opus runs at 48 kHz
    "48k": ("flac", None, 48_000, 0.0),
    "trimmed": ("flac", None, None, 1.0),
    "trimmed-mp3": ("mp3", 192_000, None, 1.0),
}


def encode_copy(source: Path, target: Path, bit_rate, sample_rate, trim_s) -> Path:
    """Another file of the recording at ``source``: decoded and encoded again by FFmpeg."""
    decoded = AudioDecoder(str(source)).get_all_samples()
    samples = decoded.data[:, int(round(trim_s * decoded.sample_rate)) :].contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    AudioEncoder(samples, sample_rate=decoded.sample_rate).to_file(
        str(target), bit_rate=bit_rate, sample_rate=sample_rate
    )
    return target


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Four distinct tunes of one length, the first also in every way of COPIES; and ten other tunes
    of other lengths, so that the catalog has enough distinct tracks to fit its rule on."""
    root = tmp_path_factory.mktemp("library")
    music = root / "music"
    for n in range(4):
        write_audio(music / f"tune{n}.wav", melody_track(300 + n, SECONDS, SAMPLE_RATE), SAMPLE_RATE)
    for n in range(10):
        write_audio(music / "others" / f"other{n}.flac", melody_track(400 + n, 8 + 3 * n, SAMPLE_RATE), SAMPLE_RATE)
    for name, (suffix, bit_rate, rate, trim) in COPIES.items():
        encode_copy(music / "tune0.wav", music / "copies" / f"tune0-{name}.{suffix}", bit_rate, rate, trim)
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    return music, model


@pytest.fixture(scope="module")
def indexed(library, tmp_path_factory):
    music, model = library
    directory = tmp_path_factory.mktemp("indexed") / "cat"
    with Catalog.create(directory, model=str(model), layer=2) as cat:
        cat.index_paths([music])
    return directory


def _names(group: dict) -> set[str]:
    return {Path(p).name for p in [group["path"], *(a["path"] for a in group["alternates"])]}


def test_reencoded_resampled_and_trimmed_copies_are_linked_and_distinct_tunes_are_not(indexed):
    with Catalog.open(indexed) as cat:
        groups = cat.duplicates()
        assert len(groups) == 1
        assert _names(groups[0]) == {"tune0.wav"} | {f"tune0-{name}.{spec[0]}" for name, spec in COPIES.items()}
        results = cat.search(Path(groups[0]["path"]), k=5)
        assert len(results[0].alternates) == len(COPIES)  # the recording once, with its other files
        assert not any(Path(r.path).name.startswith("tune0") for r in results[1:])
        rule = DuplicateRule.from_meta(cat.store.meta(META_KEY))
        assert rule.measured_tracks >= MIN_FIT_TRACKS and rule.distance < rule.nearest_distinct / 1.5


def test_an_ingest_decides_its_links_again_when_its_closing_fit_moves_the_limit(library, tmp_path, monkeypatch):
    """An empty catalog starts with the small catalog's limit, made so strict here that only the
    lossless copies pass it while files arrive; the fit at the end of the run (fourteen tunes)
    moves the limit, and the run's files are linked again under it: every copy joins."""
    from mertsearch.indexer import duplicates

    monkeypatch.setattr(duplicates, "SMALL_CATALOG_DISTANCE", 1e-6)
    music, model = library
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        decided = []
        real = duplicates.find_leader
        monkeypatch.setattr(
            "mertsearch.catalog.ingest.find_leader",
            lambda *args, **kwargs: decided.append(kwargs["rule"].distance) or real(*args, **kwargs),
        )
        cat.index_paths([music])
        assert set(decided) == {1e-6}  # every file arrived under the strict limit
        groups = cat.duplicates()
        assert len(groups) == 1 and len(groups[0]["alternates"]) == len(COPIES)
        assert DuplicateRule.from_meta(cat.store.meta(META_KEY)).distance > 1e-3


def test_the_aligned_distance_finds_a_trimmed_start_between_windows():
    """Windows of a slowly changing feature path, cut at 0, 5, 10 s... and, for the copy, 1 s later:
    placed at the best shift, the copy's windows meet blends of the original's where they land."""
    rng = np.random.default_rng(1)
    times = np.arange(0, 60, 0.01)
    # Features that change over tens of seconds, as a piece moves on; blends of neighbouring windows
    # then stand for the windows in between.
    weights, rates, phases = rng.normal(size=(16, 6)), rng.uniform(0.01, 0.05, 6), rng.uniform(0, 6.3, 6)
    path = np.sin(2 * np.pi * rates[None, :] * times[:, None] + phases) @ weights.T

    def windows(start: float, end: float) -> Windows:
        starts = np.arange(start, end - 5 + 1e-9, 5.0)
        if end - (starts[-1] + 5) >= 1:
            starts = np.append(starts, end - 5)
        means = np.stack([path[(times >= s) & (times < s + 5)].mean(axis=0) for s in starts])
        unit = means / np.linalg.norm(means, axis=1, keepdims=True)
        return Windows(starts - start, starts - start + 5, unit, end - start)

    original, copy = windows(0, 50), windows(1, 50)
    distance, shift = aligned_distance(copy, original)
    assert shift == pytest.approx(1.0, abs=0.15)
    by_position = 1 - np.sum(copy.vectors * original.vectors[: len(copy.vectors)], axis=1)
    assert distance < np.quantile(by_position, 0.9) / 5
    assert aligned_distance(original, original) == (pytest.approx(0, abs=1e-9), 0.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_the_limit_is_fitted_on_the_catalog_so_close_distinct_tracks_stay_apart(tmp_path, tiny_model):
    """Eight families of three tracks of different lengths around one centre each, so that distinct
    tracks lie well within the fixed floor of agreement; a twin of track 0 (its length, its centre,
    windows of its own) is not linked to it, while a copy of track 1 (its windows, a hair off) is."""
    rng = np.random.default_rng(0)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        dim = cat.manifest.encoder.dim
        centres = _unit(rng.normal(size=(8, dim)))
        windows = {}
        for n in range(24):
            windows[n] = _unit(centres[n // 3] + rng.normal(0, 0.03, (8 + 3 * (n % 3), dim)))
        windows[24] = _unit(centres[0] + rng.normal(0, 0.03, windows[0].shape))  # the twin of track 0
        windows[25] = _unit(windows[1] + rng.normal(0, 0.002, windows[1].shape))  # a copy of track 1
        for n, vectors in windows.items():
            cat.store.put_track(synthetic_track(n, vectors))
        cat.rebuild_index()
        twin_gap = np.quantile(1 - np.sum(windows[0] * windows[24], axis=1), 0.9)
        copy_gap = np.quantile(1 - np.sum(windows[1] * windows[25], axis=1), 0.9)
        assert copy_gap < SMALL_CATALOG_DISTANCE and twin_gap < MAX_DISTANCE / 2  # a fixed limit would link both
        done = cat.repair()
        rule = DuplicateRule.from_meta(cat.store.meta(META_KEY))
        assert rule.measured_tracks == 26 and copy_gap < rule.distance < twin_gap / 1.5
        assert [_ids(cat, g) for g in cat.duplicates()] == [{2, 26}]  # ids are n + 1
        assert "linked 1 file(s) to another file of the same recording" in done


def test_the_rule_of_a_small_catalog_and_the_floor_of_agreement():
    """By hand: MARGIN times closer than the 5% quantile of the nearest distinct distances, at most
    MAX_DISTANCE; a catalog with too few measured tracks gets the small catalog's limit."""
    close = DuplicateRule.fitted([0.02 + 0.001 * n for n in range(20)], catalog_tracks=25)
    assert close.nearest_distinct == pytest.approx(0.02 + 0.001 * 0.95)
    assert close.distance == pytest.approx(close.nearest_distinct / 2)
    far = DuplicateRule.fitted([0.5] * 20, catalog_tracks=20)
    assert far.distance == MAX_DISTANCE == 0.1
    small = DuplicateRule.fitted([0.5] * (MIN_FIT_TRACKS - 1) + [float("inf")], catalog_tracks=12)
    assert small.distance == SMALL_CATALOG_DISTANCE and small.nearest_distinct is None
    assert DuplicateRule.from_meta(close.as_meta()) == close
    assert not close.stale(25) and not close.stale(27) and close.stale(28) and close.stale(22)


def test_the_limit_set_by_copies_of_the_catalogs_tracks():
    """By hand: COPY_MARGIN times the farthest copy, unless distinct music (the fit's, or two measured
    excerpts') comes within MARGIN times that, never beyond MAX_DISTANCE; at least the small
    catalog's limit; a measurement without a track measured leaves the rule as without copies."""
    measured = CopyDistances({"mp3 128 kbit/s": 0.001, "aac 128 kbit/s": 0.002, "1 s trimmed": 0.02}, 3, [0], 3, 20.0)
    rule = DuplicateRule.fitted([], catalog_tracks=3, copies=measured)
    assert (rule.basis, rule.distance) == (BY_COPIES, pytest.approx(COPY_MARGIN * 0.02))
    assert DuplicateRule.fitted([0.5, 0.6], catalog_tracks=3, copies=measured).basis == BY_COPIES
    close = DuplicateRule.fitted([0.05, 0.5], catalog_tracks=3, copies=measured)
    assert (close.basis, close.distance) == (BY_DISTINCT, pytest.approx(np.quantile([0.05, 0.5], 0.05) / MARGIN))
    excerpts = DuplicateRule.fitted([0.5], catalog_tracks=3, copies=replace(measured, distinct=0.04))
    assert (excerpts.basis, excerpts.distance) == (BY_DISTINCT, pytest.approx(0.04 / MARGIN))
    far = DuplicateRule.fitted([], catalog_tracks=3, copies=replace(measured, distances={"1 s trimmed": 0.05}))
    assert (far.basis, far.distance) == (BY_FLOOR, MAX_DISTANCE)
    exact = DuplicateRule.fitted([], catalog_tracks=3, copies=replace(measured, distances={"mp3 128 kbit/s": 1e-7}))
    assert exact.distance == SMALL_CATALOG_DISTANCE
    none = DuplicateRule.fitted([0.5], catalog_tracks=3, copies=replace(measured, distances={}, tracks=0))
    assert (none.basis, none.distance) == (BY_SMALL, SMALL_CATALOG_DISTANCE)
    assert DuplicateRule.from_meta(rule.as_meta()) == rule
    said = excerpts.describe()
    assert "2 times closer than the nearest distinct tracks" in said and "1 s trimmed 0.02" in said
    assert "the nearest two excerpts of distinct tracks come to 0.04" in said
    assert f"{COPY_MARGIN:g} times the farthest copy of the catalog's own tracks" in rule.describe()
    # A rule an earlier version stored says what it was fitted on.
    old = DuplicateRule.from_meta(
        '{"distance": 0.09, "nearest_distinct": 0.18, "measured_tracks": 30, "catalog_tracks": 30}'
    )
    assert (old.basis, old.copies) == (BY_DISTINCT, None) and "2 times closer" in old.describe()


def _ids(cat, group: dict) -> set[int]:
    return {group["track_id"], *(a["track_id"] for a in group["alternates"])}


def test_repair_relinks_a_catalog_linked_under_the_old_rule_and_a_second_repair_changes_nothing(library, tmp_path):
    music, model = library
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("tune0.wav", "tune1.wav", "tune2.wav", "copies/tune0-mp3.mp3"):
        shutil.copy(music / name, folder / Path(name).name)
    catalog = tmp_path / "cat"
    with Catalog.create(catalog, model=str(model), layer=2) as cat:
        cat.index_paths([folder])
        ids = {Path(row["path"]).name: row["track_id"] for row in cat.find_tracks()["tracks"]}
        assert [_ids(cat, g) for g in cat.duplicates()] == [{ids["tune0.wav"], ids["tune0-mp3.mp3"]}]
        # As earlier versions left it: the MP3 missed, and a wrong link between two tunes; no fitted rule.
        with cat.store.engine.begin() as connection:
            connection.execute(text("UPDATE tracks SET duplicate_of = NULL"))
            connection.execute(
                text("UPDATE tracks SET duplicate_of = :a WHERE id = :b"),
                {"a": ids["tune1.wav"], "b": ids["tune2.wav"]},
            )
            connection.execute(text("DELETE FROM meta WHERE key = :key"), {"key": META_KEY})
    runner = CliRunner()
    first = runner.invoke(app, ["repair", "--catalog", str(catalog), "--json"])
    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)["done"]
    text_done = "\n".join(done)
    assert "fitted the duplicate rule" in text_done
    # The older file leads the recording.
    leader, other = sorted(["tune0.wav", "tune0-mp3.mp3"], key=ids.get)
    assert "linked 1 file(s)" in text_done and f"{folder / other} = {folder / leader}" in text_done
    assert "unlinked 1 file(s)" in text_done and f"{folder / 'tune2.wav'} (was = {folder / 'tune1.wav'})" in text_done
    with Catalog.open(catalog) as cat:
        assert [_ids(cat, g) for g in cat.duplicates()] == [{ids["tune0.wav"], ids["tune0-mp3.mp3"]}]
        assert cat.verify() == []
    second = json.loads(runner.invoke(app, ["repair", "--catalog", str(catalog), "--json"]).stdout)
    assert second["done"] == [] and second["problems"] == []
    plain = runner.invoke(app, ["repair", "--catalog", str(catalog)])
    assert plain.exit_code == 0 and "linked" not in plain.stdout


def test_eval_measures_copies_without_adding_them(indexed, tmp_path):
    copy = tmp_path / "cat"
    shutil.copytree(indexed, copy)
    with Catalog.open(copy) as cat:
        tracks = cat.store.count("tracks")
        report = cat.evaluate(excerpts=1, seconds=4, seed=0, baseline=False, duplicates=2)
        assert cat.store.count("tracks") == tracks
    found = report["duplicates"]
    assert found["tracks_copied"] == 2
    rows = found["copies"]
    assert all(row["copies"] == 2 for row in rows.values())
    assert found["recall"] == 1.0 and found["precision"] == 1.0
    assert found["distinct_pairs"]["linked"] == 0 and found["distinct_pairs"]["grouped"] > 0
    from mertsearch.evaluation.report import write_report

    write_report(report, tmp_path / "report")
    assert "## Duplicate files" in (tmp_path / "report" / "eval.md").read_text()
