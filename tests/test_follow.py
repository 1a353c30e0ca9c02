"""Readers never write, and follow the writer: a reader whose saved index lags the database, and a
running server, answer like a freshly opened catalog after every kind of change."""

import shutil

import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.client import Client
from mertsearch.storage.indexes import Indexes
from tests.helpers import SAMPLE_RATE, tone_track, write_audio

from .servers import running


def _files(catalog) -> dict[str, int]:
    """Every file of a catalog but its database, with its modification time."""
    return {
        str(path.relative_to(catalog)): path.stat().st_mtime_ns
        for path in catalog.rglob("*")
        if path.is_file() and not path.name.startswith("catalog.db")
    }


def _answers(cat: Catalog, clip) -> dict:
    return {
        "similar": [(r.track_id, r.score) for seed in (1, 4) for r in cat.similar(seed, k=3)],
        "search": [(r.track_id, r.score) for r in cat.search(clip, k=3)],
        "tracks": [(r.track_id, r.score) for r in cat.search(clip, k=3, mode="tracks")],
    }


def _same(got: dict, want: dict) -> None:
    for kind in want:
        assert [i for i, _ in got[kind]] == [i for i, _ in want[kind]], kind
        assert [s for _, s in got[kind]] == pytest.approx([s for _, s in want[kind]], abs=1e-5), kind


def test_a_reader_behind_the_saved_index_catches_up_in_memory_and_writes_nothing(
    tmp_path, tiny_model, music, monkeypatch
):
    catalog = tmp_path / "cat"
    shutil.move(music / "sub", tmp_path / "later")
    with Catalog.create(catalog, model=str(tiny_model), layer=3) as writer:
        writer.index_paths([music])  # four tracks, saved
        # What a reader meets between a writer's saves: tracks stored and removed since the index file.
        monkeypatch.setattr(Indexes, "save", lambda self: None)
        shutil.move(tmp_path / "later", music / "sub")
        assert writer.index_paths([music]).added == 2
        writer.remove([2])
        monkeypatch.undo()
    clip = (tone_track(4, 6, SAMPLE_RATE)[:, SAMPLE_RATE:], SAMPLE_RATE)  # from sub/e.wav, track 5
    before = _files(catalog)
    for mmap in (True, False):
        with Catalog.open(catalog, mmap=mmap) as reader:
            caught_up = _answers(reader, clip)
            assert caught_up["search"][0][0] == 5
            assert all(track != 2 for kind in caught_up.values() for track, _ in kind)
        assert _files(catalog) == before  # no index, manifest or transform file written
    with Catalog.open(catalog) as writer:
        writer.rebuild_index()  # what the database holds, saved
    with Catalog.open(catalog) as fresh:
        _same(caught_up, _answers(fresh, clip))


def test_a_running_server_answers_like_a_freshly_opened_catalog_after_every_change(tmp_path, tiny_model, music):
    catalog = tmp_path / "cat"
    shutil.move(music / "sub", tmp_path / "more")
    with Catalog.create(catalog, model=str(tiny_model), layer=3, keep_layers=True) as writer:
        writer.index_paths([music])
    clip = write_audio(tmp_path / "clip.wav", tone_track(2, 6, SAMPLE_RATE), SAMPLE_RATE)

    def served(client: Client) -> dict:
        pairs = {
            "similar": [r for seed in (1, 4) for r in client.similar(seed, k=3)],
            "search": client.search(clip, k=3),
            "tracks": client.search(clip, k=3, mode="tracks"),
        }
        return {kind: [(r["track_id"], r["score"]) for r in results] for kind, results in pairs.items()}

    def fresh() -> dict:
        with Catalog.open(catalog) as cat:
            return _answers(cat, clip)

    with running(Settings(catalog=catalog)) as url, Client(url) as client:
        _same(served(client), fresh())
        with Catalog.open(catalog) as writer:
            changes = [
                lambda: writer.reindex(transform="center"),
                lambda: writer.reindex(layer=1),
                lambda: writer.rebuild_index(factory="IVF2,Flat"),
                lambda: writer.index_paths([tmp_path / "more"]),
                lambda: writer.remove([3]),
                lambda: writer.reindex(layer=4, transform="none"),
            ]
            for change in changes:
                before = served(client)
                change()
                now = served(client)
                _same(now, fresh())
                if change is changes[2]:  # the same answers (rescored exactly) from another kind of index
                    assert client.info()["index"]["tracks"]["kind"] == "IVF2,Flat"
                else:
                    assert now != before
        assert client.info()["layers"] == [4] and client.info()["tracks"] == 5
