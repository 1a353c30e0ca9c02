"""The similarity of results: the share of a catalog's random pairs that score lower, fitted at
index and reindex time, taken up by readers and servers, and a floor that loses no result."""

import json

import httpx
import numpy as np
import pytest
from sqlalchemy import delete

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.catalog.calibrate import fitted
from mertsearch.errors import InvalidArgumentError
from mertsearch.search.calibration import LEVELS, META_KEY, Calibration
from mertsearch.search.options import SearchOptions
from mertsearch.storage.schema import Meta
from tests.helpers import SAMPLE_RATE, cli, melody_track, screen, tone_track, write_audio

from .conftest import TAGS
from .servers import running


def run(*args, code: int = 0):
    return cli(*args, code=code)


def test_a_similarity_is_the_share_of_the_sampled_scores_below_it():
    samples = np.random.default_rng(0).normal(size=4000)
    quantiles = np.quantile(samples, np.linspace(0, 1, LEVELS))
    calibration = Calibration(
        quantiles={"tracks": quantiles, "segments": quantiles + 1},
        pairs={"tracks": 4000, "segments": 4000},
        fitted_on_tracks=4000,
        layers=[7],
        transform=None,
    )
    for score in (-2.5, -1.0, 0.0, 0.3, 1.7):
        assert calibration.similarity("tracks", score) == pytest.approx(np.mean(samples < score), abs=2e-3)
        assert calibration.similarity("segments", score + 1) == pytest.approx(np.mean(samples < score), abs=2e-3)
    assert calibration.similarity("tracks", -10) == 0.0 and calibration.similarity("tracks", 10) == 1.0
    again = Calibration.from_json(calibration.to_json())
    assert again.to_json() == calibration.to_json() and again.fits([7], None) and not again.fits([6], None)
    assert Calibration.from_json("null") is None and Calibration.from_json("{not json") is None


def test_tracks_mode_similarity_is_the_share_of_all_pairs_that_score_lower(tagged_catalog):
    cat, _ = tagged_catalog
    # By hand: every pair of the twelve tracks, scored as whole-track search scores them.
    _, vectors = cat.store.all_track_vectors(cat.manifest.encoder.dim)
    transformed = cat.transform(vectors)
    pairs = (transformed @ transformed.T)[np.triu_indices(len(vectors), 1)]
    seen = []
    for track_id in range(1, len(TAGS) + 1):
        for result in cat.similar(track_id, k=11):
            assert result.similarity == pytest.approx(np.mean(pairs < result.score - 1e-6), abs=0.02)
            seen.append(result.similarity)
    assert len(seen) == 132 and np.median(seen) == pytest.approx(0.5, abs=0.03)


def _clip(n: int, start: float = 1.3, seconds: float = 10.0) -> np.ndarray:
    """Seconds of the n-th tune of the tagged catalog, off the window grid."""
    samples = melody_track(100 + n, TAGS[n][3], SAMPLE_RATE)
    return samples[:, int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)]


def test_clips_score_about_one_against_their_source_and_a_half_against_the_rest(tagged_catalog):
    cat, _ = tagged_catalog
    sources, others = [], []
    for n in range(len(TAGS)):
        for result in cat.search((_clip(n), SAMPLE_RATE), k=12):
            (sources if result.path.endswith(f"{n:02d}.flac") else others).append(result.similarity)
    assert len(sources) == 12 and min(sources) >= 0.97
    assert len(others) == 132 and 0.35 <= np.median(others) <= 0.65


def test_a_re_encoded_copy_is_about_one_in_both_modes(tagged_catalog, tmp_path):
    cat, music = tagged_catalog
    copy = write_audio(tmp_path / "copy.mp3", melody_track(103, TAGS[3][3], SAMPLE_RATE), SAMPLE_RATE)
    for mode in ("tracks", "segments"):
        best = cat.search(copy, k=3, mode=mode)[0]
        assert best.path.endswith("03.flac") and best.similarity >= 0.99


def test_min_similarity_keeps_every_result_that_qualifies(tagged_catalog):
    cat, _ = tagged_catalog
    everything = cat.similar(1, k=11)
    for floor in (everything[0].similarity, everything[3].similarity, everything[8].similarity, 0.0):
        wanted = [(r.track_id, r.similarity) for r in everything if r.similarity >= floor]
        kept = cat.similar(1, k=11, min_similarity=floor)
        assert [(r.track_id, r.similarity) for r in kept] == wanted
        assert [r.track_id for r in cat.similar(1, k=2, min_similarity=floor)] == [i for i, _ in wanted[:2]]
    # Segments mode fetches windows in rounds: a floor must not end them before k results are found.
    clip = cat.embed((_clip(4, start=2.0, seconds=6.0), SAMPLE_RATE))
    full = cat.search_embedding(clip, k=12)
    for floor in sorted({r.similarity for r in full}):
        for k in (1, 2, 4):
            got = cat.search_embedding(clip, k=k, min_similarity=floor)
            assert [r.track_id for r in got] == [r.track_id for r in full if r.similarity >= floor][:k]
    for floor in [r.score for r in full]:
        got = cat.search_embedding(clip, k=3, min_score=floor)
        assert [r.track_id for r in got] == [r.track_id for r in full if r.score >= floor][:3]


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_min_similarity_outside_zero_to_one_is_refused(bad):
    with pytest.raises(InvalidArgumentError, match="min_similarity"):
        SearchOptions(min_similarity=bad)


def test_command_line_and_http_show_and_filter_by_similarity(tagged_catalog, tmp_path):
    cat, _ = tagged_catalog
    floor = cat.similar(2, k=11)[4].similarity
    expected = [r.as_dict() for r in cat.similar(2, k=11, min_similarity=floor)]
    assert len(expected) == 5
    document = json.loads(run("similar", 2, "-c", cat.directory, "-k", 11, "--min-similarity", floor, "--json").stdout)
    assert document["results"] == expected
    # Piped, a line per result: rank, similarity, id, path; at a terminal, one number per result.
    lines = [line.split("\t") for line in run("similar", 2, "-c", cat.directory, "-k", 3).stdout.splitlines()]
    assert lines[0] == ["1", f"{expected[0]['similarity']:.3f}", str(expected[0]["track_id"]), expected[0]["path"]]
    table = screen("similar", 2, "-c", cat.directory, "-k", 3)
    assert table[0].split()[:3] == ["#", "similarity", "id"] and "score" not in table[0]
    assert f"{expected[0]['similarity']:.3f}" in table[1]
    run("similar", 2, "-c", cat.directory, "--min-similarity", 1.5, code=2)
    clip = write_audio(tmp_path / "clip.wav", _clip(6), SAMPLE_RATE)
    found = json.loads(run("search", clip, "-c", cat.directory, "--min-similarity", 0.9, "--json").stdout)["results"]
    assert found and found[0]["path"].endswith("06.flac") and all(r["similarity"] >= 0.9 for r in found)
    with running(Settings(catalog=cat.directory)) as url:
        answer = httpx.get(f"{url}/tracks/2/similar", params={"k": 11, "min_similarity": floor}, timeout=60)
        assert answer.json()["results"] == expected
        assert httpx.get(f"{url}/tracks/2/similar", params={"min_similarity": 1.5}).status_code == 422
        posted = httpx.post(
            f"{url}/search", files={"file": ("clip.wav", clip.read_bytes())}, data={"min_similarity": "0.9"}, timeout=60
        ).json()["results"]
        assert [r["track_id"] for r in posted] == [r["track_id"] for r in found]


def _tones(folder, count: int, first: int = 0):
    for n in range(first, first + count):
        write_audio(folder / f"{n:02d}.wav", tone_track(n, 8 + n % 5, SAMPLE_RATE), SAMPLE_RATE)
    return folder


def test_index_fits_a_calibration_and_fits_again_as_the_catalog_grows(tmp_path, tiny_model):
    music = _tones(tmp_path / "music", 5)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
        assert cat.calibration is None and cat.similar(1, k=2)[0].similarity is None  # too few tracks
        sizes = []
        for added in (1, 2, 1):
            _tones(music, added, first=len(list(music.iterdir())))
            cat.index_paths([music])
            sizes.append(cat.calibration.fitted_on_tracks)
        assert sizes == [6, 6, 9]  # again once it has half as many tracks again
        stored = cat.store.meta(META_KEY)
        assert fitted(cat).to_json() == fitted(cat).to_json() == stored  # seeded: the same catalog, the same fit
        assert cat.info()["calibration"]["fitted_on_tracks"] == 9


def test_readers_and_a_running_server_take_up_a_new_calibration_after_reindex(tmp_path, tiny_model):
    music = _tones(tmp_path / "music", 8)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
    with Catalog.open(tmp_path / "cat", mmap=True) as reader, running(Settings(catalog=tmp_path / "cat")) as url:
        before = reader.similar(1, k=7)
        assert all(r.similarity is not None for r in before)
        with Catalog.open(tmp_path / "cat") as writer:
            report = writer.reindex(transform="center")
        assert report["calibration"]["fitted_on_tracks"] == 8
        after = reader.similar(1, k=7)
        served = httpx.get(f"{url}/tracks/1/similar", params={"k": 7}, timeout=60).json()["results"]
        with Catalog.open(tmp_path / "cat") as fresh:
            expected = fresh.similar(1, k=7)
            assert reader.calibration.to_json() == fresh.calibration.to_json() != ""
        assert after == expected and served == [r.as_dict() for r in expected]
        assert reader.calibration.transform == reader.manifest.transform.file is not None


def test_a_catalog_without_a_calibration_answers_with_null_until_repair(tmp_path, tiny_model):
    music = _tones(tmp_path / "music", 7)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
        with cat.store.session() as session, session.begin():  # as a catalog from before calibrations
            session.execute(delete(Meta).where(Meta.key == META_KEY))
    with Catalog.open(tmp_path / "cat") as cat:
        assert [r.similarity for r in cat.similar(1, k=3)] == [None] * 3
        with pytest.raises(InvalidArgumentError, match="reindex"):
            cat.similar(1, k=3, min_similarity=0.5)
    document = json.loads(run("similar", 1, "-c", tmp_path / "cat", "--json").stdout)
    assert all(r["similarity"] is None for r in document["results"])
    run("similar", 1, "-c", tmp_path / "cat")
    run("similar", 1, "-c", tmp_path / "cat", "--min-similarity", 0.5, code=1)
    with running(Settings(catalog=tmp_path / "cat")) as url:
        answer = httpx.get(f"{url}/tracks/1/similar", params={"min_similarity": 0.5})
        assert answer.status_code == 422 and "reindex" in answer.json()["message"]
        repaired = json.loads(run("repair", "-c", tmp_path / "cat", "--json").stdout)["done"]
        assert "fitted the similarity calibration (results now carry a similarity)" in repaired
        again = json.loads(run("repair", "-c", tmp_path / "cat", "--json").stdout)["done"]
        assert not any("calibration" in line for line in again)
        results = httpx.get(f"{url}/tracks/1/similar", params={"min_similarity": 0.5}).json()["results"]
        assert results and all(r["similarity"] >= 0.5 for r in results)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_a_floor_does_not_end_the_segment_rounds_while_an_unfetched_track_can_reach_it(tmp_path):
    """Tracks whose one window all but equals a query window fill the first round's hits, yet align
    poorly; the one track that aligns well has no window among those hits. A floor the first round's
    candidates all miss must not stop the search before that track."""
    from mertsearch.search.calibration import fit
    from mertsearch.search.engine import Query, Rules, align, rank
    from mertsearch.storage.indexes import Indexes
    from mertsearch.storage.store import MetadataStore
    from mertsearch.storage.vector_index import FLAT
    from tests.helpers import synthetic_track

    dim, hop = 32, 2.5
    rng = np.random.default_rng(3)
    query_windows = _unit(rng.normal(size=(3, dim)))
    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    n = 0
    for spiked in range(3):
        for _ in range(20):
            windows = _unit(rng.normal(size=(6, dim)))
            windows[2] = _unit(query_windows[spiked] + 0.05 * rng.normal(size=dim))  # about 0.96
            store.put_track(synthetic_track(n, windows, hop=hop))
            n += 1
    along = _unit(query_windows + rng.normal(size=(3, dim)) / np.sqrt(dim))  # about 0.7 each, in order
    store.put_track(synthetic_track(n, np.concatenate([_unit(rng.normal(size=(2, dim))), along]), hop=hop))
    indexes = Indexes(tmp_path, store, dim=dim, factory=FLAT, transform=lambda v: v)
    indexes.rebuild()
    query = Query(_unit(query_windows.mean(0)), query_windows, np.array([[0, 5], [2.5, 7.5], [5, 10]], float))
    aligned = {
        t: align(times, vectors, query, hop / 2)[0]
        for t, (times, vectors) in store.windows_of(store.ids("tracks").tolist()).items()
    }
    floor = 0.5
    qualifying = sorted((t for t in aligned if aligned[t] >= floor), key=lambda t: -aligned[t])
    assert qualifying == [n + 1]  # the one track that aligns (ids start at 1), by brute force
    calibration = fit(store, lambda v: v, layers=[0], transform_file=None, tolerance=hop / 2, sampled=False)
    similarity = calibration.scorer("segments")

    def ranked(**rules) -> list[int]:
        results = rank(
            mode="segments",
            tracks_index=indexes.tracks,
            windows_index=indexes.windows,
            store=store,
            query=query,
            k=3,
            rules=Rules(**rules),
            transform=lambda v: v,
            tolerance=hop / 2,
            similarity=similarity,
        )
        return [r.track_id for r in results]

    assert ranked(min_score=floor) == qualifying
    passing = sorted((t for t in aligned if similarity(aligned[t]) >= similarity(floor)), key=lambda t: -aligned[t])
    assert passing and ranked(min_similarity=similarity(floor)) == passing


def test_eval_reports_the_similarity_of_true_sources_the_kth_result_and_random_pairs(tagged_catalog, tmp_path):
    from mertsearch.evaluation.report import write_report

    cat, _ = tagged_catalog
    report = cat.evaluate(excerpts=4, seconds=8, seed=3, k=5, baseline=False)
    section = report["similarity"]
    assert section["calibrated"] and section["k"] == 5 and section["source_found"] >= 3
    assert section["source"] >= 0.95 and section["kth"] < section["source"]
    assert section["random_pairs"]["tracks"] == pytest.approx(0.5, abs=0.05)  # 66 pairs: all of them
    assert 0.35 <= section["random_pairs"]["segments"] <= 0.65  # another draw than the calibration's
    assert "layers" not in section
    write_report(report, tmp_path / "report")
    assert "## Similarity" in (tmp_path / "report" / "eval.md").read_text()


def test_eval_gives_each_kept_layer_its_similarity_figures(tmp_path, tiny_model):
    music = _tones(tmp_path / "music", 6)
    with Catalog.create(tmp_path / "all", model=str(tiny_model), layer=3, keep_layers=True) as cat:
        cat.index_paths([music])
        report = cat.evaluate(excerpts=2, seconds=6, seed=1, k=3, baseline=False)
    section = report["similarity"]
    rows = section["layers"]
    assert [row["layer"] for row in rows] == [0, 1, 2, 3, 4] and all(row["calibrated"] for row in rows)
    searched = next(row for row in rows if row["layer"] == 3)
    assert {key: searched[key] for key in section if key != "layers"} == {
        key: value for key, value in section.items() if key != "layers"
    }
