"""Text search on a catalog: CLaMP 3 vectors made from the catalog's own MERT run, checked against
the recipe run step by step, searched by words through the library, the CLI and HTTP, and added
to an existing catalog in one command."""

from __future__ import annotations

import json
import shutil

import httpx
import mutagen
import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.audio.decode import decode_audio
from mertsearch.client import Client
from mertsearch.encoder.checkpoint import Checkpoint, load_model
from mertsearch.errors import InvalidArgumentError
from mertsearch.evaluation.text import caption_retrieval
from mertsearch.search.options import SearchOptions
from tests.clamp3_checkpoint import make_clamp3_checkpoint, reference_window_features
from tests.helpers import cli, melody_track, write_audio, write_tiny_mert
from tests.servers import running

# (artist, title, genre, seconds): lengths that end on the 5 s grid, past it by less than 1 s (a
# tail the recipe drops), by more (a short last window), and shorter than one window.
TRACKS = [
    ("Åsa", "Café del mar", "jazz", 12.0),
    ("Åsa", "Second", "jazz", 13.7),
    ("Борис", "Ночь", "rock", 10.4),
    ("Борис", "День", "rock", 15.0),
    ("東京", "夜の歌", "folk", 3.5),
    ("東京", "朝", None, 9.0),
]


@pytest.fixture(scope="module")
def text_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    model, _ = write_tiny_mert(root / "model")
    clamp = make_clamp3_checkpoint(root / "clamp")
    for n, (artist, title, genre, seconds) in enumerate(TRACKS):
        path = write_audio(root / "music" / f"{n:02d}.flac", melody_track(200 + n, seconds, 24000), 24000)
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["title"] = artist, title
        if genre:
            tagged["genre"] = genre
        tagged.save()
    return root, model, clamp


@pytest.fixture(scope="module")
def text_catalog(text_setup):
    root, model, clamp = text_setup
    with Catalog.create(root / "cat", model=str(model), text=str(clamp), precision="fp32") as cat:
        report = cat.index_paths([root / "music"], decoders=0)
        assert report.added == len(TRACKS) and not report.failed
        yield cat


def _reference_vector(cat, model_dir, path, *, normalise: bool = True) -> np.ndarray:
    """The track's CLaMP 3 vector by the published recipe: the whole track normalised (unless not
    ``normalise``), 5 s windows through the model one at a time, every layer's mean
    (tests/clamp3_checkpoint.py)."""
    model = load_model(Checkpoint(model_dir, str(model_dir), None, None))
    samples = decode_audio(str(path), sample_rate=24000)
    return cat.text_model.audio_vector(reference_window_features(model, samples, 24000, normalise=normalise))


def test_text_vectors_follow_the_recipe_from_the_catalogs_own_run(text_setup, text_catalog):
    root, model, _ = text_setup
    cat = text_catalog
    assert cat.info()["text"]["tracks"] == len(TRACKS)
    for n in range(len(TRACKS)):
        path = root / "music" / f"{n:02d}.flac"
        track_id = cat.track_id(path)
        stored = cat.store.text_vectors_of([track_id])[track_id]
        # Windows, their last one, layers and towers exactly as the recipe has them...
        np.testing.assert_allclose(stored, _reference_vector(cat, model, path, normalise=False), atol=1e-5)
        # ...which also normalises each whole track first: MERT's first normalisation undoes that,
        # but for its epsilon.
        expected = _reference_vector(cat, model, path)
        assert float(stored @ expected) > 0.9999, path.name
        np.testing.assert_allclose(stored, expected, atol=2e-3)
    # The searched windows are the catalog's own: the text recipe's short last window is not one of them.
    windows = cat.store.windows_of([cat.track_id(root / "music" / "01.flac")])
    times = next(iter(windows.values()))[0]
    np.testing.assert_allclose(times, [[0, 5], [5, 10], [8.7, 13.7]], atol=1e-3)


def test_words_rank_tracks_by_their_text_vectors_with_filters_and_caps(text_catalog):
    cat = text_catalog
    query = cat.text_model.text_vectors(["a calm piano at night"])[0]
    ids = cat.store.ids("tracks")
    vectors = cat.store.text_vectors_of(ids)
    expected = sorted(ids, key=lambda i: -float(vectors[i] @ query))
    results = cat.search_text("a calm piano at night", k=len(ids))
    assert [r.track_id for r in results] == expected
    assert [r.score for r in results] == pytest.approx([float(vectors[i] @ query) for i in expected], abs=1e-5)
    similarities = [r.similarity for r in results]
    assert similarities == sorted(similarities, reverse=True) and 0 <= min(similarities) <= max(similarities) <= 1
    assert all(r.match.start == 0 and r.match.end == r.duration for r in results)

    only = cat.search_text("a calm piano at night", SearchOptions.parse(["artist=борис"], k=10))
    assert {r.artist for r in only} == {"Борис"}
    capped = cat.search_text("a calm piano at night", k=10, per_artist=1)
    assert len(capped) == 3 and len({r.artist for r in capped}) == 3
    assert cat.search_text("夜の静かなピアノ", k=2)  # another script reads too


def test_bad_words_are_refused_clearly(text_catalog):
    cat = text_catalog
    for words, message in [("", "empty"), ("   ", "empty"), ("x" * 2001, "limit is 2000")]:
        with pytest.raises(InvalidArgumentError, match=message):
            cat.search_text(words)
    with pytest.raises(InvalidArgumentError, match="similar tracks"):
        cat.search_text("piano", exclude=(1,))


def test_a_catalog_without_text_says_how_to_add_it_and_one_command_does(text_setup, tmp_path):
    root, model, clamp = text_setup
    music = tmp_path / "music"
    shutil.copytree(root / "music", music)
    catalog = tmp_path / "cat"
    cli("index", str(music), "--catalog", str(catalog), "--model", str(model), "--precision", "fp32")
    result = cli("search", "--catalog", str(catalog), "--text", "piano", code=1)
    assert "--text" in result.output and "no text vectors" in result.output

    added = json.loads(
        cli("index", str(music), "--catalog", str(catalog), "--text", "--text-model", str(clamp), "--json").output
    )
    assert added["updated"] == len(TRACKS) and added["added"] == 0 and not added["failed"]
    again = json.loads(cli("index", str(music), "--catalog", str(catalog), "--text", "--json").output)
    assert again["unchanged"] == len(TRACKS) and again["updated"] == 0

    found = json.loads(cli("search", "--catalog", str(catalog), "--text", "calm piano", "-k", "3", "--json").output)
    assert len(found["results"]) == 3
    with Catalog.open(catalog) as cat:
        assert cat.info()["text"]["tracks"] == len(TRACKS)
        assert cat.store.count("tracks") == len(TRACKS)  # no duplicates
    shown = cli("search", "--catalog", str(catalog), "--text", "calm piano", "-k", "2", columns=80, terminal=True)
    assert all(len(line) <= 80 for line in shown.output.splitlines())


def test_text_search_is_refused_for_other_windows_and_nothing_is_written(text_setup, tmp_path):
    root, model, clamp = text_setup
    with Catalog.create(tmp_path / "cat", model=str(model), hop=2.5) as cat:
        with pytest.raises(InvalidArgumentError, match="default windows"):
            cat.enable_text(str(clamp))
        assert cat.manifest.text is None
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.manifest.text is None


def test_words_over_http_and_a_clip_with_words(text_setup, text_catalog):
    root, _, _ = text_setup
    cat = text_catalog
    with running(Settings(catalog=cat.directory, token="secret")) as url:
        with Client(url, token="secret") as client:
            found = client.search_text("calm piano", k=3, filter=["artist=Åsa"])
            assert {r["artist"] for r in found} == {"Åsa"}
            assert [r["track_id"] for r in found] == [
                r.track_id for r in cat.search_text("calm piano", SearchOptions.parse(["artist=åsa"], k=3))
            ]
            clip = root / "music" / "03.flac"
            mixed = client.search(clip, k=3, text="calm piano")
            assert mixed and all(0 <= r["similarity"] <= 1 for r in mixed)
            assert mixed[0]["track_id"] == cat.track_id(clip)  # the clip itself still leads
        too_long = httpx.get(f"{url}/search", params={"text": "x" * 2001}, headers={"Authorization": "Bearer secret"})
        assert too_long.status_code == 422
        empty = httpx.get(f"{url}/search", params={"text": ""}, headers={"Authorization": "Bearer secret"})
        assert empty.status_code == 422
        unauthorised = httpx.get(f"{url}/search", params={"text": "piano"})
        assert unauthorised.status_code == 401


@pytest.mark.slow
def test_the_page_finds_tracks_by_words(text_catalog):
    from playwright.sync_api import expect, sync_playwright

    from tests.test_page import CHROMIUM, FLAGS

    expect.set_options(timeout=30_000)
    token = "page-token"
    expected = [r.title for r in text_catalog.search_text("calm piano", k=3)]
    with running(Settings(catalog=text_catalog.directory, token=token)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's screen
        page.goto(url + "/")
        page.fill("#token", token)
        page.fill("#k", "3")
        page.fill("#words", "calm piano")
        page.press("#words", "Enter")
        results = page.locator("li.result")
        expect(results).to_have_count(3)
        expect(page.locator("#status")).to_contain_text("Tracks that fit “calm piano”")
        assert [item.locator(".title").inner_text() for item in results.all()] == expected
        page.fill("#words", "")
        page.click("#describe")
        expect(page.locator("#status")).to_contain_text("Type some words first")
        browser.close()


def test_captions_from_tags_measure_text_retrieval_against_chance():
    # Four tracks on two axes; "a music" lies along the first: its tracks 0 and 2 come first.
    vectors = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], np.float32)
    labels = ["a", "b", "a", None]

    def embed(captions):
        return np.array([[1.0, 0.0] if caption == "a music" else [0.0, 1.0] for caption in captions], np.float32)

    found = caption_retrieval(vectors, labels, embed, k=2)
    assert found["captions"] == 1 and found["examples"] == ["a music"]  # "b" is on one track only
    assert found["precision_at_k"] == 1.0 and found["map"] == 1.0 and found["chance"] == 0.5
    labels = ["a", "b", "b", "a"]  # each caption ranks its two tracks 1st and 3rd
    found = caption_retrieval(vectors, labels, embed, k=2)
    assert found["captions"] == 2
    assert found["precision_at_k"] == 0.5
    assert found["map"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)


def test_eval_reports_text_retrieval_from_the_genre_tags(text_catalog):
    report = text_catalog.evaluate(excerpts=2, seconds=3, baseline=False, duplicates=0)
    text = report["text"]
    assert text["source"] == "genre" and text["captions"] == 2  # jazz and rock: two tracks each
    assert 0 <= text["precision_at_k"] <= 1 and 0 < text["chance"] < 1


def test_the_hub_checkpoint_is_found_in_the_cache_at_its_pinned_revisions(monkeypatch, tmp_path, text_setup):
    from huggingface_hub import constants

    from mertsearch.encoder import clamp3

    _, _, local = text_setup
    cache = tmp_path / "hub"
    weights = cache / "models--sander-wood--clamp3" / "snapshots" / clamp3.REVISION
    text = cache / "models--FacebookAI--xlm-roberta-base" / "snapshots" / clamp3.TEXT_REVISION
    weights.mkdir(parents=True)
    shutil.copy(local / clamp3.WEIGHTS_FILE, weights / clamp3.WEIGHTS_FILE)
    shutil.copytree(local / "text", text)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # a download would fail
    monkeypatch.delenv(clamp3.ENV, raising=False)
    model = clamp3.load_clamp3()
    assert (model.source, model.revision) == (clamp3.REPO_ID, clamp3.REVISION)
    assert model.weights_sha256 == clamp3.load_clamp3(local).weights_sha256
    found = json.loads(cli("models", "download", "clamp3", "--json").output)
    assert found["revision"] == clamp3.REVISION and found["text_directory"] == str(text)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "milvus-lite"])
def test_text_vectors_follow_the_catalog_on_every_backend(backend, text_setup, tmp_path, request, monkeypatch):
    """A file removed or changed: its text vector goes or changes with it, and a reader that searched
    before (a server) follows, on SQLite, PostgreSQL and with Milvus holding the audio vectors."""
    root, model, clamp = text_setup
    settings = {}
    if backend == "postgresql":
        monkeypatch.setenv("MERTSEARCH_DATABASE", request.getfixturevalue("postgres_url"))
    if backend == "milvus-lite":
        pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install 'mertsearch[milvus]')")
        settings["vector_store"] = f"milvus://{tmp_path / 'v.db'}"
    music = tmp_path / "music"
    shutil.copytree(root / "music", music)
    with Catalog.create(tmp_path / "cat", model=str(model), text=str(clamp), precision="fp32", **settings) as cat:
        assert cat.index_paths([music], decoders=0).added == len(TRACKS)
    with Catalog.open(tmp_path / "cat") as reader, Catalog.open(tmp_path / "cat") as writer:
        before = {r.path for r in reader.search_text("calm piano", k=10)}
        assert len(before) == len(TRACKS)
        gone, changed = music / "00.flac", music / "03.flac"
        gone.unlink()
        write_audio(changed, melody_track(999, 11.0, 24000), 24000)
        report = writer.index_paths([music], decoders=0)
        assert (report.removed, report.updated) == (1, 1)
        after = reader.search_text("calm piano", k=10)
        assert {r.path for r in after} == before - {str(gone)}
        changed_id = writer.track_id(changed)
        expected = writer.store.text_vectors_of([changed_id])[changed_id]
        query = writer.text_model.text_vectors(["calm piano"])[0]
        assert next(r.score for r in after if r.track_id == changed_id) == pytest.approx(
            float(expected @ query), abs=1e-5
        )
        assert writer.info()["text"]["tracks"] == len(TRACKS) - 1


def test_a_checkpoint_of_the_wrong_shape_is_refused_and_nothing_is_written(text_setup, tmp_path):
    from mertsearch.errors import ModelLoadError

    root, model, _ = text_setup

    def narrower(state):
        state["audio_proj.weight"] = state["audio_proj.weight"][:, :16]

    broken = make_clamp3_checkpoint(tmp_path / "broken", edit=narrower)
    wider = make_clamp3_checkpoint(tmp_path / "wider", hidden=64)  # reads 64-dim features, not this MERT's 32
    with Catalog.create(tmp_path / "cat", model=str(model)) as cat:
        with pytest.raises(ModelLoadError, match="audio_proj.weight"):
            cat.enable_text(str(broken))
        with pytest.raises(InvalidArgumentError, match="needs a catalog of mert-v1-95m"):
            cat.enable_text(str(wider))
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.manifest.text is None and cat.store.count("text_vectors") == 0
    result = cli(
        "index", str(root / "music"), "--catalog", str(tmp_path / "cat"), "--text", "--text-model", str(broken), code=1
    )
    assert "audio_proj.weight" in result.output


def test_the_server_says_why_words_cannot_be_searched(text_setup, tmp_path):
    root, model, clamp = text_setup
    copy = tmp_path / "clamp"
    shutil.copytree(clamp, copy)
    with Catalog.create(tmp_path / "text-cat", model=str(model), text=str(copy), precision="fp32") as cat:
        cat.index_paths([root / "music" / "05.flac"], decoders=0)
    with Catalog.create(tmp_path / "plain-cat", model=str(model), precision="fp32") as cat:
        cat.index_paths([root / "music" / "05.flac"], decoders=0)
    shutil.rmtree(copy)  # the weights the text vectors came from are gone
    clip = (root / "music" / "05.flac").read_bytes()
    with running(Settings(catalog=tmp_path / "text-cat")) as url:
        answer = httpx.get(f"{url}/search", params={"text": "piano"})
        assert answer.status_code == 503 and "search by words is unavailable" in answer.json()["message"]
        assert (
            httpx.post(f"{url}/search", files={"file": ("c.flac", clip)}, timeout=120).status_code == 200
        )  # audio still works
    with running(Settings(catalog=tmp_path / "plain-cat")) as url:
        answer = httpx.get(f"{url}/search", params={"text": "piano"})
        assert answer.status_code == 422 and "--text" in answer.json()["message"]
