"""Several layers, every layer kept, switching layers and centering without the model, tune-layer."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mertsearch import Catalog, InvalidArgumentError
from mertsearch.evaluation.metrics import label_retrieval
from mertsearch.storage.transform import VectorTransform
from tests.helpers import assert_consistent, screen, tone_track, write_audio, write_tiny_mert


def _vectors(cat: Catalog) -> dict[str, np.ndarray]:
    ids, vectors = cat.store.all_track_vectors(cat.manifest.encoder.dim)
    tracks = cat.store.tracks_by_id(ids.tolist())
    return {tracks[i].path: v for i, v in zip(ids, vectors, strict=True)}


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_several_layers_are_the_mean_of_normalised_layer_vectors(tmp_path):
    directory, reference = write_tiny_mert(tmp_path / "m")
    clip = tone_track(3, 5.0, 24000, channels=1)
    from mertsearch import embed

    got = embed((clip, 24000), model=str(directory), layers=[1, 3], precision="fp32").vector
    with torch.inference_mode():
        states = reference(torch.from_numpy(clip), output_hidden_states=True).hidden_states
    expected = _normalize(sum(_normalize(states[layer].mean(dim=1)[0].numpy()) for layer in (1, 3)))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_reindex_to_another_layer_equals_indexing_with_it(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "all", model=str(tiny_model), layer=2, keep_layers=True) as cat:
        cat.index_paths([music])
        assert cat.info()["layer_vectors_bytes"] > 0
        report = cat.reindex(layer=4)
        assert report["tracks_rewritten"] == 6 and cat.info()["layers"] == [4]
        switched = _vectors(cat)
        assert_consistent(cat, 6)
    with Catalog.create(tmp_path / "four", model=str(tiny_model), layer=4) as direct:
        direct.index_paths([music])
        for path, vector in _vectors(direct).items():
            np.testing.assert_allclose(switched[path.replace("/four/", "/all/")], vector, atol=1e-5)
    with Catalog.open(tmp_path / "all") as reopened:  # the switch is durable
        assert reopened.manifest.encoder.layers == [4]
        reopened.index_paths([music])  # new and changed files follow the switched layer
        assert reopened.encoder.layers == (4,)


def test_switching_layers_needs_kept_layers(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music / "a.wav"])
        with pytest.raises(InvalidArgumentError, match="--keep-layers all"):
            cat.reindex(layer=3)


def test_a_crash_between_database_and_manifest_is_repaired_on_open(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2, keep_layers=True) as cat:
        cat.index_paths([music / "a.wav", music / "b.flac"])
        positions = [3]
        from mertsearch.encoder.pooling import searchable_vectors

        # What reindex does first, in one transaction; then "crash" before the manifest is written.
        cat.store.rewrite_searchable(32, lambda w: searchable_vectors(w, positions), {"layers": json.dumps([3])})
    manifest = tmp_path / "cat" / "manifest.json"
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.manifest.encoder.layers == [3]  # the database is the source of truth
        assert json.loads(manifest.read_text())["encoder"]["layers"] == [2]  # a reader writes nothing
        assert_consistent(cat, 2)
        cat.index_paths([music / "a.wav"])  # the next writer mends the manifest
        assert json.loads(manifest.read_text())["encoder"]["layers"] == [3]


def test_centering_spreads_scores_and_applies_to_queries(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
        raw = cat.similar(1, k=5)
        report = cat.reindex(transform="center")
        assert report["scores_after"]["std"] > 5 * report["scores_before"]["std"]
        centered = cat.similar(1, k=5)
        assert max(r.score for r in centered) - min(r.score for r in centered) > max(r.score for r in raw) - min(
            r.score for r in raw
        )
        # A query that is a copy of a catalog track scores 1 against it after the same transform.
        assert cat.search(music / "c.mp3", k=1)[0].score == pytest.approx(1.0, abs=1e-4)
        # Tracks added later are transformed like the rest: an index rebuilt from scratch agrees.
        write_audio(music / "late.wav", tone_track(50, 7, 44100), 44100)
        cat.index_paths([music])
        incremental = [(r.track_id, round(r.score, 4)) for r in cat.similar(2, k=6)]
        cat.rebuild_index()
        assert [(r.track_id, round(r.score, 4)) for r in cat.similar(2, k=6)] == incremental
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.info()["transform"] == "center"
        assert [(r.track_id, round(r.score, 4)) for r in cat.similar(2, k=6)] == incremental


def test_the_previous_transform_file_stays_for_readers_that_are_loading_it(tmp_path, tiny_model, music):
    """A reader that read the transform's name just before a reindex must still find the file."""
    catalog = tmp_path / "cat"
    with Catalog.create(catalog, model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
        cat.reindex(transform="center")
        centering = cat.manifest.transform.file
        with Catalog.open(catalog) as reader:
            assert reader.manifest.transform.file == centering  # what the reader knows...
            cat.reindex(transform="whiten")  # ...as a writer replaces it
            whitening = cat.manifest.transform.file
            assert (catalog / centering).is_file() and (catalog / whitening).is_file()
            assert reader.similar(1, k=3) and reader.info()["transform"] == "whiten"  # then takes up the new
        cat.reindex(transform="none")  # two generations on, the centering's file goes
        assert [p.name for p in catalog.glob("transform-*.npz")] == [whitening]


def test_whitening_decorrelates_the_catalog():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(8, 8))
    vectors = (rng.normal(size=(5000, 8)) @ mixing + 3.0).astype(np.float32)
    fitted = VectorTransform.fit("whiten", vectors)
    white = (vectors - fitted.mean) @ fitted.matrix
    covariance = np.cov(white.T)
    np.testing.assert_allclose(covariance, np.eye(8), atol=0.05)
    assert np.allclose(np.linalg.norm(fitted(vectors), axis=1), 1, atol=1e-5)


def test_label_retrieval_matches_a_hand_computed_ranking():
    # Query 0's ranking of the others by cosine: 1 (same label), 2 (other), 3 (same).
    vectors = _normalize(np.array([[1, 0], [0.9, 0.1], [0.7, 0.3], [0.2, 0.8]], dtype=np.float32))
    result = label_retrieval(vectors, ["a", "a", "b", "a"], k=2)
    # AP for query 0: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2. Query 1: ranking 0, 2, 3 -> (1 + 2/3) / 2.
    # Query 3: ranking 2 (0.7*0.2+0.3*0.8 highest), 1, 0 -> hits at 2 and 3 -> (1/2 + 2/3) / 2. Query 2 has no match.
    assert result["queries"] == 3
    assert result["map"] == pytest.approx(((1 + 2 / 3) / 2 * 2 + (1 / 2 + 2 / 3) / 2) / 3)
    assert result["precision_at_k"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2) / 3)
    # nDCG@2: queries 0 and 1 hit at rank 1 of 2 relevant -> 1 / (1 + 1/log2(3)); query 3 at rank 2.
    ideal = 1 + 1 / np.log2(3)
    assert result["ndcg_at_k"] == pytest.approx((2 * (1 / ideal) + (1 / np.log2(3)) / ideal) / 3)
    alone = label_retrieval(vectors, ["a", "a", "b", "a"], artists=["x", "x", "y", "z"], exclude_same_artist=True, k=2)
    # Query 0 and 1 lose each other; 0 ranks 2, 3 -> AP 1/2; 1 ranks 2, 3 -> AP 1/2; 3 ranks 2, 1, 0 -> (1/2+2/3)/2.
    assert alone["map"] == pytest.approx((1 / 2 + 1 / 2 + (1 / 2 + 2 / 3) / 2) / 3)
    by_album = label_retrieval(vectors, ["a", "a", "b", "a"], albums=["p", "p", "q", "r"], exclude_same_album=True, k=2)
    assert by_album["map"] == pytest.approx(alone["map"])


def _mean_average_precision(vectors: np.ndarray, labels: list[str]) -> float:
    """Each track queries the others by cosine; the mean over queries of the precision at each same-label hit."""
    vectors = _normalize(vectors)
    averages = []
    for query, label in enumerate(labels):
        others = [i for i in range(len(labels)) if i != query]
        ranked = sorted(others, key=lambda i: -float(vectors[query] @ vectors[i]))
        hits = [rank for rank, i in enumerate(ranked, start=1) if labels[i] == label]
        averages.append(np.mean([found / rank for found, rank in enumerate(hits, start=1)]))
    return float(np.mean(averages))


def _check_against_hand_computed_map(cat: Catalog, report: dict, label_of) -> dict[int, float]:
    """Every row of a tune_layers report against mAP computed here from the stored per-layer vectors,
    raw and centered, and the recommended layer against the best centered one."""
    ids, per_layer = cat.store.track_layer_vectors(cat.manifest.encoder.dim)
    tracks = cat.store.tracks_by_id(ids.tolist())
    labels = [label_of(tracks[i].path) for i in ids]
    centered_maps = {}
    for row in report["layers"]:
        vectors = per_layer[:, row["layer"]]
        centered_maps[row["layer"]] = _mean_average_precision(_normalize(vectors - vectors.mean(axis=0)), labels)
        assert row["map"] == pytest.approx(_mean_average_precision(vectors, labels), abs=1e-4)
        assert row["map_centered"] == pytest.approx(centered_maps[row["layer"]], abs=1e-4)
        assert row["scores_centered"]["std"] > row["scores"]["std"]
    assert centered_maps[report["recommended_layer"]] == pytest.approx(max(centered_maps.values()), abs=1e-4)
    return centered_maps


def _diagonal(path: str) -> str:
    """A label mixing the genre folder and the pitch step of a ``labelled`` track (.../genreG/tI.flac)."""
    return str((int(path[-9]) + int(path[-6])) % 3)


@pytest.fixture
def labelled(tmp_path):
    """Three 'genres' of four generated tracks each, one folder per genre."""
    folder = tmp_path / "labelled"
    rng = np.random.default_rng(0)
    t = np.arange(24000 * 6) / 24000
    for genre, (base, noise) in enumerate([(220, 0.02), (440, 0.3), (97, 0.1)]):
        for i in range(4):
            f = base * (1 + 0.03 * i)
            x = 0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 2.01 * f * t) + rng.normal(0, noise, len(t))
            write_audio(folder / f"genre{genre}" / f"t{i}.flac", np.clip(x, -1, 1)[None].astype(np.float32), 24000)
    return folder


def test_tune_layer_ranks_every_kept_layer(tmp_path, labelled):
    # Larger random weights than the default, so each layer changes the vectors enough to rank apart.
    model, _ = write_tiny_mert(tmp_path / "model", overrides={"initializer_range": 0.5})
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2, keep_layers=True) as cat:
        cat.index_paths([labelled])
        report = cat.tune_layers()
        assert [row["layer"] for row in report["layers"]] == [0, 1, 2, 3, 4]
        assert report["labels"] == 3 and report["queries"] == 12
        _check_against_hand_computed_map(cat, report, lambda path: Path(path).parent.name)
        # A harder labelling across the folders, on which the layers differ.
        paths = [track.path for track in cat.store.tracks_by_id(list(range(1, 13))).values()]
        crossing = cat.tune_layers({path: _diagonal(path) for path in paths})
        assert len(set(_check_against_hand_computed_map(cat, crossing, _diagonal).values())) > 1
        # Labels from a CSV override folder names; unlabelled tracks are distractors only.
        table = tmp_path / "labels.csv"
        with open(table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            for genre in range(2):
                for i in range(4):
                    writer.writerow([f"labelled/genre{genre}/t{i}.flac", f"g{genre}"])
        from mertsearch.evaluation.metrics import read_labels

        from_csv = cat.tune_layers(read_labels(table))
        assert from_csv["labels"] == 2 and from_csv["labelled"] == 8


def test_tune_layer_cli_writes_table_plot_and_json(tmp_path, tiny_model, labelled):
    from typer.testing import CliRunner

    from mertsearch.cli import app

    runner = CliRunner()
    catalog = tmp_path / "cat"
    args = ["index", str(labelled), "--catalog", str(catalog), "--model", str(tiny_model), "--keep-layers", "all"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["tune-layer", "--catalog", str(catalog)])
    assert result.exit_code == 0, result.output
    assert "Recommended layer" in result.stdout and (catalog / "tune-layer.png").stat().st_size > 1000
    table = screen("tune-layer", "--catalog", catalog)  # at a terminal 80 columns wide: no column cut
    assert all(len(line) <= 80 for line in table) and table[1].split()[:3] == ["layer", "P@10", "mAP"]
    plot = tmp_path / "plot.png"
    document = json.loads(
        runner.invoke(app, ["tune-layer", "--catalog", str(catalog), "--plot", str(plot), "--json"]).stdout
    )
    assert document["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"
    switched = json.loads(runner.invoke(app, ["reindex", "--catalog", str(catalog), "--layer", "1", "--json"]).stdout)
    assert switched["layers"] == [1]
    bad = runner.invoke(app, ["index", str(labelled), "--catalog", str(catalog), "--keep-layers", "some"])
    assert bad.exit_code == 1 and "--keep-layers takes 'all'" in bad.stderr
