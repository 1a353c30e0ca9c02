"""`mertsearch eval`: excerpt identification under degradations, label retrieval, score spread; seeded."""

import json

import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.evaluation.excerpts import DEGRADATIONS, draw_excerpts
from mertsearch.storage.transform import VectorTransform
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, write_audio, write_tiny_mert


@pytest.mark.slow
def test_eval_report_is_seeded_complete_and_finds_clean_excerpts(tagged_catalog, tmp_path):
    cat, _ = tagged_catalog
    first = cat.evaluate(excerpts=4, seconds=8, seed=3)
    again = cat.evaluate(excerpts=4, seconds=8, seed=3)
    assert first == again  # same seed, same numbers
    rows = first["identification"]["degradations"]
    assert list(rows) == list(DEGRADATIONS) and first["identification"]["excerpts"] == 4
    assert rows["clean"]["recall_at_1"] >= 0.5 and rows["clean"]["median_position_error_s"] <= 2.5
    assert rows["clean"]["recall_at_10"] >= rows["clean"]["recall_at_1"]
    assert rows["noise 5 dB SNR"]["recall_at_1"] <= rows["clean"]["recall_at_1"]
    assert first["labels"]["labels"] == 4 and first["labels"]["layers"]  # folder names: 4 artists
    assert first["scores"]["true_matches"]["count"] >= 2
    other = cat.evaluate(excerpts=4, seconds=8, seed=4, baseline=False)
    assert "baseline" not in other  # another seed draws other excerpts and other random pairs
    assert other["scores"]["true_match_samples"] != first["scores"]["true_match_samples"]
    assert other["scores"]["random_pair_samples"] != first["scores"]["random_pair_samples"]
    reference = first["baseline"]
    assert reference["model"] == "spectral" and list(reference["degradations"]) == list(DEGRADATIONS)
    assert reference["degradations"]["clean"]["recall_at_1"] >= 0.75 and reference["labels"]["layers"]

    from mertsearch.evaluation.report import write_report

    files = write_report(first, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "eval.json").read_text())["seed"] == 3
    markdown = (tmp_path / "report" / "eval.md").read_text()
    assert "| mp3 64 kbit/s |" in markdown and "![scores](eval-scores.png)" in markdown
    assert "spectral baseline" in markdown
    assert all((tmp_path / "report" / name).stat().st_size > 1000 for name in ("eval-scores.png", "eval-layers.png"))
    assert set(files) == {"json", "markdown", "scores", "layers"}


@pytest.fixture(scope="module")
def every_layer(tmp_path_factory):
    """Six generated tunes in two folders, a discerning tiny model (layers 0-2), every layer kept, centered."""
    root = tmp_path_factory.mktemp("every-layer")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    for n in range(6):
        write_audio(root / "music" / "ab"[n % 2] / f"{n}.flac", melody_track(200 + n, 12 + n, SAMPLE_RATE), SAMPLE_RATE)
    with Catalog.create(root / "all", model=str(model), layer=2, keep_layers=True, hop=2.5) as cat:
        cat.index_paths([root / "music"])
        cat.reindex(transform="center")
        yield cat, model, root, cat.evaluate(**SWEPT)


SWEPT = {"excerpts": 3, "seconds": 6, "seed": 5, "baseline": False}


@pytest.mark.slow
def test_layer_sweep_gives_each_kept_layer_the_numbers_of_a_catalog_searching_it(every_layer, tmp_path):
    cat, model, root, report = every_layer
    assert cat.evaluate(**SWEPT) == report  # same seed, same report, sweep included
    assert cat.manifest.encoder.layers == [2]  # the catalog itself is left as it was
    rows = report["identification"]["layers"]
    assert [row["layer"] for row in rows] == [0, 1, 2]
    assert all(list(row["degradations"]) == list(DEGRADATIONS) for row in rows)
    assert rows[2]["degradations"] == report["identification"]["degradations"]  # the searched layer
    # An independent reference: a catalog indexed to search layer 1 only, centered the same way.
    with Catalog.create(tmp_path / "one", model=str(model), layer=1, hop=2.5) as one:
        one.index_paths([root / "music"])
        one.reindex(transform="center")
        single = one.evaluate(**SWEPT)
    assert "layers" not in single["identification"]
    assert rows[1]["degradations"] == single["identification"]["degradations"]

    from mertsearch.evaluation.report import write_report

    files = write_report(report, tmp_path / "report")
    markdown = (tmp_path / "report" / "eval.md").read_text()
    assert "### Per layer" in markdown and "| 1 | " in markdown and "true pairs, centered" in markdown
    assert (tmp_path / "report" / "eval-layers.png").stat().st_size > 1000 and "layers" in files


@pytest.mark.slow
def test_true_pairs_are_scored_raw_and_centered_like_a_hand_computation(every_layer):
    cat, _, _, report = every_layer
    scores = report["scores"]
    # The clean excerpts, drawn again from the same seed, embedded, and scored by hand against their sources.
    drawn = draw_excerpts(
        cat, count=SWEPT["excerpts"], seconds=SWEPT["seconds"], rng=np.random.default_rng(SWEPT["seed"])
    )
    ids, vectors = cat.store.all_track_vectors(cat.manifest.encoder.dim)
    stored = dict(zip(ids.tolist(), vectors, strict=True))
    center = VectorTransform.fit("center", vectors)
    raw, centered = [], []
    for excerpt in drawn:
        query = cat.embed((excerpt.samples, cat.encoder.sample_rate)).vector
        source = stored[excerpt.track_id]
        raw.append(float(query @ source))
        mean = vectors.mean(axis=0)
        q, s = query - mean, source - mean
        centered.append(float(q @ s / np.linalg.norm(q) / np.linalg.norm(s)))
        assert centered[-1] == pytest.approx(float(center(query[None])[0] @ center(source[None])[0]), abs=1e-5)
    assert scores["true_match_samples_raw"] == pytest.approx(raw, abs=2e-4)
    assert scores["true_match_samples_centered"] == pytest.approx(centered, abs=2e-4)
    assert scores["true_matches_centered"]["count"] == 3
    assert scores["true_matches_centered"]["mean"] == pytest.approx(np.mean(centered), abs=2e-4)
    assert len(scores["random_pair_samples_centered"]) == len(scores["random_pair_samples"]) == 2000
    # Centering spreads random pairs far more than it lowers true pairs.
    assert scores["random_pairs"]["std"] < scores["random_pairs_centered"]["std"]


def test_silent_stretches_are_never_drawn_as_excerpts(tmp_path):
    from types import SimpleNamespace

    quiet = np.zeros((1, 20 * SAMPLE_RATE), dtype=np.float32)
    quiet[:, 14 * SAMPLE_RATE :] = melody_track(7, 6, SAMPLE_RATE)[:1]  # silence, then 6 s of music
    tracks = [(1, str(write_audio(tmp_path / "quiet.flac", quiet, SAMPLE_RATE)), 20.0)]
    tracks += [
        (n, str(write_audio(tmp_path / f"{n}.flac", melody_track(n, 20, SAMPLE_RATE), SAMPLE_RATE)), 20.0)
        for n in (2, 3)
    ]
    fake = SimpleNamespace(
        encoder=SimpleNamespace(sample_rate=24000),
        windows=SimpleNamespace(hop_s=5.0),
        store=SimpleNamespace(durations=lambda: tracks),
    )
    for seed in range(6):
        drawn = draw_excerpts(fake, count=3, seconds=8, rng=np.random.default_rng(seed))
        assert drawn and all(np.abs(e.samples).max() > 1e-3 for e in drawn)
        assert len({e.track_id for e in drawn}) == len(drawn)
    assert any(len(draw_excerpts(fake, count=3, seconds=8, rng=np.random.default_rng(s))) == 2 for s in range(6))


def test_a_small_report_is_written_whole(tmp_path, tiny_model, music):
    """The whole road of `eval` on a small catalog: identification, labels (folders), scores, the files."""
    from mertsearch.evaluation.report import write_report

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
        report = cat.evaluate(excerpts=2, seconds=4, seed=1, baseline=False)
    assert report["identification"]["excerpts"] == 2 and "baseline" not in report
    assert list(report["identification"]["degradations"]) == list(DEGRADATIONS)
    files = write_report(report, tmp_path / "report")
    assert set(files) == {"json", "markdown", "scores", "layers"}  # labels: the folders a catalog's tracks are in
    assert json.loads((tmp_path / "report" / "eval.json").read_text()) == json.loads(json.dumps(report))
    markdown = (tmp_path / "report" / "eval.md").read_text()
    assert "| clean |" in markdown and "![scores](eval-scores.png)" in markdown
    assert all(
        (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG" for name in ("eval-scores.png", "eval-layers.png")
    )


def _full_sort_retrieval(vectors: np.ndarray, labels: list, k: int) -> dict:
    """Every labelled track ranks all the others by a full stable sort: what the bounded ranking must equal."""
    precisions, averages = [], []
    for query, label in enumerate(labels):
        if not label:
            continue
        candidates = np.array([i for i in range(len(labels)) if i != query])
        scores = vectors[candidates] @ vectors[query]
        hits = np.array([labels[i] == label for i in candidates])[np.argsort(-scores, kind="stable")]
        if not hits.any():
            continue
        precisions.append(hits[:k].sum() / k)
        ranks = np.flatnonzero(hits) + 1
        averages.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return {"precision_at_k": float(np.mean(precisions)), "map": float(np.mean(averages)), "queries": len(averages)}


def test_label_retrieval_ranks_at_most_its_queries_and_as_a_full_sort_does(monkeypatch):
    from mertsearch.evaluation import metrics

    # Small integers: every score exact however it is summed, and many tied (ties rank by index).
    vectors = np.random.default_rng(2).integers(-2, 3, size=(120, 4)).astype(np.float32)
    # Small labels (ranked by counting) and one of 60 tracks (ranked by sorting).
    labels = [None if n % 7 == 0 else str(n % 9) if n < 60 else "big" for n in range(120)]
    found = metrics.label_retrieval(vectors, labels, k=5)
    expected = _full_sort_retrieval(vectors, labels, k=5)
    assert found["queries"] == expected["queries"] > 60
    assert found["precision_at_k"] == pytest.approx(expected["precision_at_k"], abs=1e-12)
    assert found["map"] == pytest.approx(expected["map"], abs=1e-12)

    ranked = []
    counted = metrics._ranked
    monkeypatch.setattr(metrics, "_ranked", lambda *args: ranked.append(1) or counted(*args))
    capped = metrics.label_retrieval(vectors, labels, k=5, queries=7)
    assert len(ranked) == capped["queries"] == 7  # a seeded sample of the labelled tracks
    assert capped == metrics.label_retrieval(vectors, labels, k=5, queries=7)


def test_tune_layers_queries_at_most_the_cap(every_layer):
    from mertsearch.evaluation.evaluate import tune_layers

    cat, *_ = every_layer
    assert tune_layers(cat)["queries"] == 6
    assert tune_layers(cat, queries=2)["queries"] == 2


@pytest.mark.slow
def test_a_larger_catalog_is_compared_on_the_excerpts_tracks_and_a_sample(every_layer, monkeypatch):
    """The baseline indexes, and the layer sweep copies, the excerpts' tracks and a sample of the
    others up to COMPARED_TRACKS; the plan counts them before the work starts."""
    from mertsearch.catalog import maintenance

    cat, *_ = every_layer
    settings = {**SWEPT, "baseline": True, "duplicates": 0}
    plan = cat.evaluation_plan(excerpts=3, baseline=True, duplicates=0)
    assert plan["tracks"] == 6 and plan["baseline_files"] == 6 and plan["sweep_tracks"] == 6
    assert plan["sweep_layers"] == 3 and plan["searches"] == 3 * len(DEGRADATIONS) * (1 + 1 + 3)
    monkeypatch.setattr(maintenance, "COMPARED_TRACKS", 4)
    assert cat.evaluation_plan(excerpts=3, baseline=True, duplicates=0)["baseline_files"] == 4
    report = cat.evaluate(**settings)
    assert report["baseline"]["tracks"] == 4 and report["identification"]["layers_tracks"] == 4
    # The excerpts' sources are among them: the baseline finds clean excerpts as on the whole catalog.
    assert report["baseline"]["degradations"]["clean"]["recall_at_10"] == 1.0
    assert [row["layer"] for row in report["identification"]["layers"]] == [0, 1, 2]


def test_eval_says_what_it_will_do_before_it_starts(tmp_path, tiny_model, music):
    from tests.helpers import cli

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    args = ["--excerpts", 2, "--seconds", 4, "--no-baseline", "--duplicates", 0, "--json"]
    result = cli("eval", "--catalog", tmp_path / "cat", *args)
    assert "eval of 6 tracks: 2 excerpts, 18 searches" in result.stderr
    assert json.loads(result.stdout)["identification"]["excerpts"] == 2
