"""A writer's saves cost what changed: a few tracks added beside a big saved index are not written
into it (every opener adds them from the database), while anything taken out is written at once;
and an index merged on disk is never taken into memory to add rows."""

import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.storage import indexes as indexes_module
from mertsearch.storage.indexes import Layered
from mertsearch.storage.vector_index import FLAT, VectorIndex, saved_version
from tests.helpers import assert_consistent, synthetic_track, tone_track, write_audio

SR = 44100


def _unit(rng, shape) -> np.ndarray:
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def big(tmp_path, tiny_model):
    """A catalog of 60 synthetic tracks (600 windows) with saved indexes, and two audio files."""
    rng = np.random.default_rng(0)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        for n in range(60):
            cat.store.put_track(synthetic_track(n, _unit(rng, (10, cat.manifest.encoder.dim))))
        cat.rebuild_index()
    files = [write_audio(tmp_path / "music" / f"{n}.wav", tone_track(n, 8, SR), SR) for n in range(2)]
    return tmp_path / "cat", files


def _saved(directory) -> tuple[int | None, int | None]:
    return saved_version(directory / "index", "tracks"), saved_version(directory / "index", "windows")


def test_a_few_tracks_added_to_a_big_index_are_not_written_into_it(big, monkeypatch):
    directory, files = big
    before = _saved(directory)
    with Catalog.open(directory) as cat:
        report = cat.index_paths([files[0]], decoders=0)
        assert report.added == 1 and _saved(directory) == before  # nothing rewritten
        assert cat.store.data_version() > max(before)
    with Catalog.open(directory) as reader:  # a fresh opener adds the track from the database
        assert_consistent(reader, 61)
        assert reader.verify() == []
        hits = reader.search(files[0], k=1)
        assert hits[0].path == str(files[0])

    def no_build(*_args, **_kwargs):
        raise AssertionError("the next writer rebuilt an index")

    monkeypatch.setattr(indexes_module.Indexes, "_build", no_build)
    with Catalog.open(directory) as writer:  # the next writer starts from the file too
        assert writer.index_paths([files[1]], decoders=0).added == 1
        assert_consistent(writer, 62)
    with Catalog.open(directory) as reader:
        assert_consistent(reader, 62)


def test_what_is_taken_out_is_written_at_once(big):
    directory, files = big
    with Catalog.open(directory) as cat:
        cat.index_paths([files[0]], decoders=0)
        cat.remove([5])
        version = cat.store.data_version()
        assert _saved(directory) == (version, version)
    with Catalog.open(directory) as reader:
        assert_consistent(reader, 60)
        assert reader.verify() == []


def test_a_reused_id_after_the_last_track_is_removed_is_found(big):
    """SQLite gives the id of a deleted last row to the next row: the saved file must not claim it."""
    directory, files = big
    with Catalog.open(directory) as cat:
        cat.index_paths([files[0]], decoders=0)
        last = cat.track_id(files[0])
        cat.remove([last])
        cat.index_paths([files[1]], decoders=0)
        assert cat.track_id(files[1]) == last  # the id came back
    with Catalog.open(directory) as reader:
        assert_consistent(reader, 61)
        assert last in {int(i) for i in reader.index.ids()}


def test_many_tracks_added_are_written_into_the_file(big, tmp_path):
    directory, _ = big
    for n in range(5):
        write_audio(tmp_path / "more" / f"{n}.wav", tone_track(10 + n, 8, SR), SR)
    with Catalog.open(directory) as cat:
        cat.index_paths([tmp_path / "more"], decoders=0)  # 5 tracks: more than 5% of 60
        version = cat.store.data_version()
    assert saved_version(directory / "index", "tracks") == version


def test_an_index_merged_on_disk_is_not_taken_into_memory_to_add_rows(big):
    directory, files = big
    with Catalog.open(directory) as cat:
        cat.rebuild_index("IVF4,Flat", shard_size=200)  # windows: 600 vectors merged from 3 shards
        lists = cat.indexes.windows.lists_file
        assert lists is not None
    with Catalog.open(directory) as cat:
        assert cat.index_paths([files[0]], decoders=0).added == 1
        assert cat.indexes.windows.lists_file == lists  # still mapped from the file, not copied
        assert len(cat.indexes.windows.recent) > 0
    with Catalog.open(directory) as reader:
        assert_consistent(reader, 61)
        assert reader.verify() == []


def test_rows_taken_out_of_the_base_are_left_out_of_searches_until_merged():
    rng = np.random.default_rng(1)
    vectors = _unit(rng, (20, 8))
    base = VectorIndex(8, FLAT)
    base.add(np.arange(20), vectors)
    layered = Layered(base, VectorIndex(8, FLAT))
    layered.remove(np.array([3]))
    assert 3 not in layered.search(vectors[3:4], 20)[1][0] and len(layered) == 19
    layered.add(np.array([3]), vectors[4:5])  # stored again with another vector
    assert layered.search(vectors[4:5], 2)[1][0].tolist() in ([3, 4], [4, 3])
    merged = layered.merged()
    assert sorted(merged.ids().tolist()) == list(range(20))
    scores, ids = merged.search(vectors[4:5], 2)
    assert set(ids[0].tolist()) == {3, 4} and np.allclose(scores[0], 1.0, atol=1e-5)


def test_a_reader_following_an_ingest_reads_only_the_rows_stored_since_its_last_look(big):
    directory, files = big
    with Catalog.open(directory) as reader, Catalog.open(directory) as writer:
        following = reader.indexes.windows
        seen = []
        for path in files:
            writer.index_paths([path], decoders=0)  # few rows: the saved files stay as they are
            assert reader.search(path, k=1)[0].path == str(path)
            assert reader.indexes.windows is following  # the same index, caught up in place
            seen.append(len(following.recent))
        assert 0 < seen[0] < seen[1]
        assert sorted(reader.indexes.windows.ids().tolist()) == sorted(writer.store.ids("windows").tolist())
