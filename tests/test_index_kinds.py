"""Every index kind supports adding, updating and removing tracks; kinds follow catalog size."""

import numpy as np
import pytest

import mertsearch.storage.vector_index as vector_index
from mertsearch import Catalog, InvalidArgumentError
from tests.helpers import assert_consistent, melody_track, write_audio

SR = 44100


def _library(folder, count):
    for n in range(count):
        write_audio(folder / f"t{n:02d}.flac", melody_track(300 + n, 8 + n % 5, SR), SR)
    return folder


@pytest.mark.parametrize("factory", ["IVF4,SQ8", "IVF4,Flat", "IDMap2,Flat"])
def test_updates_and_removals_work_for_each_kind(tmp_path, tiny_model, factory):
    music = _library(tmp_path / "music", 10)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music])
        exact = [r.track_id for r in cat.similar(1, k=5)]
        cat.rebuild_index(factory)
        assert cat.indexes.tracks.factory == factory and cat.manifest.index.factory == factory
        # Candidates are re-scored exactly, so a small catalog ranks as with exact search.
        assert [r.track_id for r in cat.similar(1, k=5)] == exact
        write_audio(music / "t03.flac", melody_track(999, 9, SR), SR)  # changed
        (music / "t04.flac").unlink()  # gone
        write_audio(music / "new.flac", melody_track(998, 9, SR), SR)  # added
        report = cat.index_paths([music])
        assert (report.added, report.updated, report.removed) == (1, 1, 1)
        cat.remove([music / "t05.flac"])
        assert_consistent(cat, 9)
        assert cat.indexes.tracks.factory == factory
    with Catalog.open(tmp_path / "cat") as reopened:
        assert reopened.indexes.windows.factory == factory
        assert_consistent(reopened, 9)


def test_auto_kind_changes_as_the_catalog_grows(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(vector_index, "FLAT_LIMIT", 20)
    monkeypatch.setattr("mertsearch.storage.indexes.FLAT_LIMIT", 20)
    music = _library(tmp_path / "music", 12)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music])  # 12 tracks, ~30 windows
        assert cat.indexes.tracks.factory == "IDMap2,Flat"
        assert cat.indexes.windows.factory.startswith("IVF") and cat.indexes.windows.factory.endswith(",SQ8")
        results = cat.search(music / "t07.flac", k=3)
        assert results[0].path.endswith("t07.flac")
        assert_consistent(cat, 12)


def test_memory_mapped_catalogs_search_but_do_not_write(tmp_path, tiny_model):
    music = _library(tmp_path / "music", 6)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music])
        expected = [r.track_id for r in cat.similar(2, k=3)]
    with Catalog.open(tmp_path / "cat", mmap=True) as mapped:
        assert [r.track_id for r in mapped.similar(2, k=3)] == expected
        assert mapped.indexes.tracks.read_only
        with pytest.raises(InvalidArgumentError, match="read-only"):
            mapped.remove([1])


def test_a_bad_factory_string_is_a_clear_error(tmp_path, tiny_model):
    music = _library(tmp_path / "music", 2)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music])
        with pytest.raises(InvalidArgumentError, match="FAISS cannot build an index"):
            cat.rebuild_index("NoSuchIndex,Flat")


def test_saves_during_an_ingest_take_at_most_a_tenth_of_the_time():
    from mertsearch.storage.indexes import SaveSchedule

    now = [0.0]

    class SlowIndexes:
        def save(self):
            now[0] += 10.0  # a save of a big index: 10 s

    schedule = SaveSchedule(60.0, 0.1, clock=lambda: now[0])
    saves = []
    for _ in range(10_000):  # a track stored every 0.1 s for 1,000 s
        now[0] += 0.1
        if schedule.due():
            saves.append(now[0])
            schedule.save(SlowIndexes())
    assert saves[0] == pytest.approx(60, abs=0.2)  # the first after a minute
    gaps = np.diff(saves)  # a save (10 s) and the 90 s after it
    assert len(gaps) >= 8 and gaps.tolist() == pytest.approx([100] * len(gaps), abs=0.2)
    assert schedule.total / now[0] <= 0.1
