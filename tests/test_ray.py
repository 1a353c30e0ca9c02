"""Ingest on a local Ray instance: the same vectors as the local executor, shards that survive a
crash and are never ingested twice, the CLI's options."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.config import RaySettings
from mertsearch.errors import InvalidArgumentError
from mertsearch.storage.store import MetadataStore, from_blob
from tests.helpers import assert_consistent, recipe_track_vector

ray = pytest.importorskip("ray")

LAYER = 3


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance (its start-up makes every test that uses it slow)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def bad_music(music):
    """The six tracks, a seventh whose name is not UTF-8, and two broken files (one so named)."""
    from tests.helpers import tone_track, write_audio

    write_audio(music / "g.flac", tone_track(9, 7, 44100), 44100).rename(music / os.fsdecode(b"caf\xe9 \xff.flac"))
    (music / "broken.mp3").write_bytes(b"not audio at all" * 64)
    (music / os.fsdecode(b"bad \xff.mp3")).write_bytes(b"not audio either" * 64)
    return music


def _vectors(cat: Catalog) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {}
    for track_id, path, _ in cat.store.durations():
        track = cat.store.track_by_path(path)
        starts, windows = cat.store.windows_of([track_id])[track_id]
        out[path] = (from_blob(track.vector), np.asarray(starts), windows)
    return out


def _layers_by_path(cat: Catalog) -> dict[str, np.ndarray]:
    """Per-layer track vectors by path: the two executors may number the tracks in other orders."""
    ids, layers = cat.store.track_layer_vectors(cat.manifest.encoder.dim)
    paths = {track_id: row.path for track_id, row in cat.store.tracks_by_id([int(i) for i in ids]).items()}
    return {paths[int(i)]: vectors for i, vectors in zip(ids, layers, strict=True)}


@pytest.mark.slow
def test_ray_gives_the_local_executors_vectors(tmp_path, tiny_model, bad_music, local_ray):
    with Catalog.create(tmp_path / "local", model=str(tiny_model), layer=LAYER, keep_layers=True) as local:
        precision = local.index_paths([bad_music], decoders=0).precision
        expected, expected_failures = _vectors(local), local.failures()
        expected_layers = _layers_by_path(local)
    with Catalog.create(tmp_path / "ray", model=str(tiny_model), layer=LAYER, keep_layers=True) as cat:
        report = cat.index_paths([bad_music], ray=RaySettings())
        assert (report.executor, report.added, report.from_shards) == ("ray", 7, 0)
        assert report.device.startswith("ray (1 actor(s), cpu") and report.precision == precision
        assert sorted((f.path, f.reason) for f in report.failed) == sorted(
            (f["path"], f["reason"]) for f in expected_failures
        )
        got = _vectors(cat)
        assert sorted(got) == sorted(expected)
        for path, (vector, starts, windows) in got.items():
            assert float(vector @ expected[path][0]) >= 0.9999
            assert np.allclose(starts, expected[path][1])
            assert np.min(np.sum(windows * expected[path][2], axis=1)) >= 0.9999
        layers = _layers_by_path(cat)
        assert sorted(layers) == sorted(expected_layers)
        for path, vectors in layers.items():
            assert np.min(np.sum(vectors * expected_layers[path], axis=-1)) >= 0.9999
        assert not (cat.directory / "shards").exists()
        assert_consistent(cat, 7)
        # Nothing changed: a second run has no work for Ray.
        again = cat.index_paths([bad_music], ray=RaySettings())
        assert (again.added, again.unchanged, again.skipped_failed) == (0, 7, 2)


@pytest.mark.slow
def test_ray_vectors_follow_the_published_recipe(tmp_path, music, local_ray):
    """Against transformers' model and processor run directly (not the engine's own local run)."""
    from transformers import Wav2Vec2FeatureExtractor

    from tests.helpers import write_tiny_mert

    directory, model = write_tiny_mert(tmp_path / "model")
    model.eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    path = music / "a.wav"
    with Catalog.create(tmp_path / "ray", model=str(directory), layer=LAYER, precision="fp32") as cat:
        cat.index_paths([path], ray=RaySettings())
        vector = from_blob(cat.store.track_by_path(str(path)).vector)
    assert float(vector @ recipe_track_vector(path, model, extractor, LAYER)) >= 0.9999


@pytest.mark.slow
def test_shards_of_a_stopped_run_are_used_once(tmp_path, tiny_model, music, local_ray, monkeypatch, database):
    original = MetadataStore.put_track
    stored = []

    def put_track_then_stop(self, record):
        if len(stored) == 2:
            raise KeyboardInterrupt  # the indexer is stopped while storing its third track
        stored.append(record.path)
        return original(self, record)

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=LAYER) as cat:
        monkeypatch.setattr(MetadataStore, "put_track", put_track_then_stop)
        with pytest.raises(KeyboardInterrupt):
            cat.index_paths([music], ray=RaySettings())
        monkeypatch.setattr(MetadataStore, "put_track", original)
        shards = cat.directory / "shards"
        left = sorted(shards.rglob("*.parquet"))
        assert left and not list(shards.rglob("*.tmp"))
        kept = tmp_path / "kept-shards"
        shutil.copytree(shards, kept)

        report = cat.index_paths([music], ray=RaySettings())
        # The track being stored when the run stopped was complete in a shard: not embedded again.
        assert (report.added, report.unchanged) == (4, 2) and report.from_shards >= 1
        assert not shards.exists()
        assert_consistent(cat, 6)

        # The same shards once more (a repeated shard): every file is stored, nothing is duplicated.
        shutil.copytree(kept, shards)
        again = cat.index_paths([music], ray=RaySettings())
        assert (again.added, again.updated, again.unchanged, again.from_shards) == (0, 0, 6, 0)
        assert cat.store.count("tracks") == 6 and not shards.exists()
        assert len({path for _, path, _ in cat.store.durations()}) == 6


def test_a_file_whose_task_died_is_failed_with_a_reason(tmp_path, tiny_model, music, monkeypatch):
    """A task killed on every try leaves no rows: the file is failed, the others are stored."""
    import pyarrow as pa

    import mertsearch.indexer.distributed as distributed

    Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=LAYER).close()
    window = 5 * 24000

    class Dataset:
        def __init__(self, jobs):
            self.jobs = list(jobs)

        def iter_batches(self, **_):
            survivor = next(job for job in self.jobs if job.path.endswith("a.wav"))
            base = {"path": survivor.path.encode(), "size": survivor.size, "mtime_ns": survivor.mtime_ns}
            empty = {"starts": [], "length": 0, "means": b"", "sha256": "", "total": 0, "tags": "", "reason": ""}
            means = np.random.default_rng(0).standard_normal((1, 1, 32)).astype(np.float32)
            rows = [
                {
                    **base,
                    **empty,
                    "seq": 0,
                    "kind": "windows",
                    "starts": [0],
                    "length": window,
                    "means": means.tobytes(),
                },
                {**base, **empty, "seq": 1, "kind": "done", "sha256": "0" * 64, "total": window, "tags": "{}"},
            ]
            yield pa.Table.from_pylist([{**row, "device": "cpu", "precision": "fp32"} for row in rows])

    monkeypatch.setattr(distributed, "_dataset", lambda jobs, *args: Dataset(jobs))
    with Catalog.open(tmp_path / "cat") as cat:
        report = cat.index_paths([music], ray=RaySettings())
    assert report.added == 1
    assert len(report.failed) == 5 and {f.reason for f in report.failed} == {distributed.LOST}


@pytest.mark.slow
def test_cli_ray_options(tmp_path, tiny_model, music):
    from typer.testing import CliRunner

    from mertsearch.cli import app

    runner = CliRunner()
    base = ["index", str(music), "--catalog", str(tmp_path / "c"), "--model", str(tiny_model), "--layer", "3"]
    wrong = runner.invoke(app, [*base, "--address", "x:1"])
    assert wrong.exit_code != 0 and "--executor ray" in wrong.output
    wrong = runner.invoke(app, [*base, "--executor", "spark"])
    assert wrong.exit_code != 0 and "'local' or 'ray'" in wrong.output
    # A process of its own, as a user runs it: Ray starts a local instance and stops with it.
    done = subprocess.run(
        [sys.executable, "-m", "mertsearch.cli", *base, "--executor", "ray", "--actors", "1", "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["executor"], document["added"], document["tracks"]) == ("ray", 6, 6)


def test_settings_are_checked():
    with pytest.raises(InvalidArgumentError):
        RaySettings(actors=0)


@pytest.mark.slow
def test_weights_that_are_not_the_catalogs_stop_the_run_in_one_line(tmp_path, tiny_model, music, local_ray):
    from mertsearch.errors import ClusterError
    from mertsearch.indexer.distributed import RayRun, embed_on_ray
    from mertsearch.indexer.pipeline import Job

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=LAYER) as cat:
        spec, windows = cat.manifest.encoder, cat.windows
    spec = dataclasses.replace(spec, weights_sha256="0" * 64)  # as if a node held other weights at that path
    model = {"directory": str(tiny_model), "batch_size": None, "precision": "fp32"}
    path = music / "a.wav"
    job = Job(str(path), path.stat().st_size, path.stat().st_mtime_ns, None)
    with pytest.raises(ClusterError, match="not the catalog's") as caught:
        list(
            embed_on_ray(
                [job],
                spec=spec,
                model=model,
                windows=windows,
                shards=tmp_path / "shards",
                settings=RaySettings(),
                run=RayRun(),
            )
        )
    assert "\n" not in str(caught.value)


def test_a_cluster_that_cannot_be_reached_is_one_line(monkeypatch):
    import mertsearch.indexer.distributed as distributed
    from mertsearch.errors import ClusterError

    def refuse(**_):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ClusterError, match="cannot connect to the Ray cluster at 10.0.0.9:6379"):
        distributed._dataset([], {}, {}, None, RaySettings(address="10.0.0.9:6379"), distributed.RayRun())


def test_ray_makes_the_text_vectors_of_a_catalog_with_text_search(tmp_path, tiny_model, music, local_ray):
    """Added to a catalog indexed on Ray before: its files are embedded again with every layer (the
    shards of a stopped run of fewer layers are not used), and the text vectors match a local run's."""
    from tests.clamp3_checkpoint import make_clamp3_checkpoint

    clamp = make_clamp3_checkpoint(tmp_path / "clamp")
    with Catalog.create(tmp_path / "local", model=str(tiny_model), text=str(clamp), precision="fp32") as local:
        local.index_paths([music], decoders=0)
        expected = {path: local.store.text_vectors_of([i])[i] for i, path in local.store.paths_under([""])}
    with Catalog.create(tmp_path / "ray", model=str(tiny_model), precision="fp32") as cat:
        assert cat.index_paths([music], ray=RaySettings()).added == len(expected)
        stale = cat.directory / "shards" / "run-0-0"  # as a stopped run without text search leaves it
        stale.mkdir(parents=True)
        (stale / "part-000000.parquet").write_bytes(b"not read")
        cat.enable_text(str(clamp))
        report = cat.index_paths([music], ray=RaySettings())
        assert (report.updated, report.from_shards, report.failed) == (len(expected), 0, [])
        for track_id, path in cat.store.paths_under([""]):
            got = cat.store.text_vectors_of([track_id])[track_id]
            assert float(got @ expected[path]) >= 0.9999, path
        assert not (cat.directory / "shards").exists()
