"""A catalog whose vectors live in Milvus Lite answers as the same catalog on exact FAISS indexes:
the same top-k for clips and `similar`, filters that fill k, removals that disappear at once,
and verify/rebuild against the collections."""

from __future__ import annotations

import json
import os

import mutagen
import pytest

from mertsearch import Catalog
from mertsearch.errors import CatalogMismatchError, InvalidArgumentError
from mertsearch.storage.filters import Filters
from tests.conftest import TAGS
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, tone_track, write_audio, write_tiny_mert

if not os.environ.get("CI"):
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install 'mertsearch[milvus]')")


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The twelve tagged tunes of conftest's TAGS in two catalogs built alike, one on FAISS files
    (exact at this size) and one in Milvus Lite: (faiss catalog, milvus catalog, music folder)."""
    root = tmp_path_factory.mktemp("twins")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    for n, (artist, album, year, seconds) in enumerate(TAGS):
        path = write_audio(
            root / "music" / artist / f"{n:02d}.flac", melody_track(100 + n, seconds, SAMPLE_RATE), SAMPLE_RATE
        )
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["album"], tagged["date"], tagged["title"] = artist, album, str(year), f"Song {n}"
        tagged.save()
    store = f"milvus://{root / 'milvus.db'}"
    with (
        Catalog.create(root / "faiss", model=str(model), layer=2, hop=2.5) as exact,
        Catalog.create(root / "milvus", model=str(model), layer=2, hop=2.5, vector_store=store) as milvus,
    ):
        for cat in (exact, milvus):
            assert cat.index_paths([root / "music"]).added == 12
            cat.reindex(transform="center")  # the Milvus collections are rebuilt in the new kind
        yield exact, milvus, root / "music"


def _clips(music_seconds=((9, 21, 3.3), (2, 14, 1.0), (11, 23, 6.2))):
    for n, seconds, offset in music_seconds:
        source = melody_track(100 + n, seconds, SAMPLE_RATE)
        yield source[:, int(offset * SAMPLE_RATE) : int((offset + 8) * SAMPLE_RATE)], SAMPLE_RATE


def _paths(results) -> list[str]:
    return [r.path.split("/")[-1] for r in results]


def test_the_manifest_records_the_store_and_faiss_keeps_no_index_files(twins):
    exact, milvus, _ = twins
    manifest = json.loads((milvus.directory / "manifest.json").read_text())
    assert manifest["index"]["vector_store"].startswith("milvus:///")
    assert manifest["index"]["collections"].startswith("mertsearch_")
    assert "vector_store" not in json.loads((exact.directory / "manifest.json").read_text())["index"]
    assert not list(milvus.directory.rglob("*.faiss")) and list(exact.directory.rglob("*.faiss"))


@pytest.mark.parametrize("mode", ["segments", "tracks"])
def test_clip_queries_give_the_same_top_k_as_exact_faiss(twins, mode):
    exact, milvus, _ = twins
    for clip in _clips():
        expected, got = exact.search(clip, k=5, mode=mode), milvus.search(clip, k=5, mode=mode)
        assert _paths(got) == _paths(expected)
        assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-4)
        assert [r.match for r in got] == [r.match for r in expected]


def test_similar_gives_the_same_neighbours(twins):
    exact, milvus, music = twins
    for seed in (music / "Ann" / "00.flac", music / "Bob" / "06.flac", music / "Dan" / "11.flac"):
        assert _paths(milvus.similar(seed, k=6)) == _paths(exact.similar(seed, k=6))
        assert _paths(milvus.similar(seed, k=6, mode="segments")) == _paths(exact.similar(seed, k=6, mode="segments"))


@pytest.mark.parametrize("mode", ["segments", "tracks"])
def test_filters_are_searched_inside_milvus_and_fill_k(twins, mode):
    exact, milvus, music = twins
    query = music / "Ann" / "00.flac"
    for filters, expected_count in [
        (Filters(artist=("cat",)), 3),
        (Filters.parse([], min_year=1990, max_year=1999), 4),
        (Filters.parse([f"path={music / 'Dan'}"]), 2),
        (Filters(min_duration=20.5), 3),
        (Filters(artist=("Bob", "dan"), max_year=2002), 2),
        (Filters(genre=("polka",)), 0),
    ]:
        got = milvus.search(query, k=10, mode=mode, filters=filters)
        assert len(got) == expected_count, filters
        assert _paths(got) == _paths(exact.search(query, k=10, mode=mode, filters=filters))
    only_cat = milvus.search(query, k=3, mode=mode, filters=Filters(artist=("CAT",)))
    assert [r.artist for r in only_cat] == ["Cat"] * 3


def test_a_filter_narrows_both_collections_to_the_allowed_tracks(twins):
    _, milvus, _ = twins
    allowed = milvus.store.track_ids_where(Filters(artist=("bob",)).condition())
    tracks = milvus.indexes.tracks.narrowed(allowed, Filters(artist=("bob",)))
    windows = milvus.indexes.windows.narrowed(allowed, Filters(artist=("bob",)))
    assert tracks.condition == 'artist in ["bob"]'
    assert sorted(tracks.ids().tolist()) == sorted(allowed.tolist())
    bob_windows = sorted(w for track_id in allowed.tolist() for w in _window_ids(milvus, track_id))
    assert windows.ids().tolist() == bob_windows and len(windows) == len(bob_windows)


def _window_ids(cat, track_id: int) -> list[int]:
    from sqlalchemy import select

    from mertsearch.storage.schema import Window

    with cat.store.session() as session:
        return list(session.scalars(select(Window.id).where(Window.track_id == track_id)))


def test_collections_hold_the_database_ids_and_verify_passes(twins):
    _, milvus, _ = twins
    assert milvus.verify() == []
    assert milvus.indexes.tracks.ids().tolist() == milvus.store.ids("tracks").tolist()
    assert milvus.indexes.windows.ids().tolist() == milvus.store.ids("windows").tolist()


def test_removals_and_additions_reach_readers_and_rebuild_mends(tmp_path, tiny_model, music):
    store = f"milvus://{tmp_path / 'vectors.db'}"
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as writer:
        assert writer.index_paths([music]).added == 6
        reader = Catalog.open(tmp_path / "cat")  # opened before the changes; never reloaded
        first = reader.search(music / "a.wav", k=6)
        assert len(first) == 6
        gone = writer.track_id(music / "b.flac")
        (music / "b.flac").unlink()
        write_audio(music / "new.wav", tone_track(7, 10, SAMPLE_RATE), SAMPLE_RATE)
        report = writer.index_paths([music])
        assert report.removed == 1 and report.added == 1
        after = reader.search(music / "c.mp3", k=10)
        assert gone not in {r.track_id for r in after} and len(after) == 6
        assert "new.wav" in _paths(after)
        assert writer.verify() == []
        # A vector lost from Milvus is found by verify, and rebuild puts it back from the database.
        writer.indexes.client.delete(writer.indexes.names["tracks"], ids=[int(writer.store.ids("tracks")[0])])
        assert any("in the database but not in Milvus" in problem for problem in writer.verify())
        writer.rebuild_index()
        assert writer.verify() == []
        assert len(writer.indexes.tracks) == 6 and len(writer.indexes.windows) == len(writer.store.ids("windows"))
        reader.close()


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://host/x", "a vector store is"),
        ("milvus://", "names its file"),
        ("http://user:secret@host:19530", "MERTSEARCH_MILVUS_TOKEN"),
        ("https://host:19530?token=abc", "MERTSEARCH_MILVUS_TOKEN"),
    ],
)
def test_a_bad_vector_store_is_refused_before_anything_is_made(tmp_path, tiny_model, url, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=url)
    assert not (tmp_path / "cat").exists()


def test_reopening_with_another_vector_store_is_a_mismatch(tmp_path, tiny_model):
    Catalog.create(tmp_path / "cat", model=str(tiny_model)).close()
    with pytest.raises(CatalogMismatchError, match="FAISS files"):
        Catalog.open(tmp_path / "cat", vector_store=f"milvus://{tmp_path / 'v.db'}")
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.info()["tracks"] == 0
