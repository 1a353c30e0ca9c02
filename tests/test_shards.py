"""Inverted-file indexes built in shards and merged on disk: same results, mapped search, no leftovers."""

import shutil
import signal
import subprocess
import sys

import faiss
import numpy as np
import pytest

from mertsearch.storage.indexes import Indexes
from mertsearch.storage.sharded import add_in_shards
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import VectorIndex
from tests.helpers import synthetic_track

DIM = 32


def _unit(rng, n):
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(path, tracks=40, windows=100, seed=0) -> MetadataStore:
    rng = np.random.default_rng(seed)
    store = MetadataStore(f"sqlite:///{path}")
    for n in range(tracks):
        vectors = _unit(rng, windows)
        store.put_track(synthetic_track(n, vectors, hop=2.5, path=f"/music/{n}.flac"))
    return store


def _indexes(folder, store, factory="IVF16,Flat", shard_size=None) -> Indexes:
    return Indexes(folder, store, dim=DIM, factory=factory, transform=lambda v: v, shard_size=shard_size)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "OPQ4,IVF16,PQ4"])
def test_sharded_build_gives_what_one_go_gives_with_the_same_training(tmp_path, factory):
    rng = np.random.default_rng(1)
    data, queries = _unit(rng, 4000), _unit(rng, 50)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7
    trained = VectorIndex(DIM, factory)
    trained.train(data[:2000])
    empty = faiss.serialize_index(trained.index)

    one_go = VectorIndex(DIM, index=faiss.deserialize_index(empty))
    one_go.add(ids, data)
    batches = [(ids[i : i + 300], data[i : i + 300]) for i in range(0, 4000, 300)]
    folder = tmp_path / "build"
    folder.mkdir()
    fresh = VectorIndex(DIM, index=faiss.deserialize_index(empty))
    sharded = add_in_shards(fresh, batches, folder=folder, shard_size=700)

    assert len(sharded) == 4000 and sharded.lists_file == folder / "lists.ivfdata"
    assert sorted(p.name for p in folder.iterdir()) == ["lists.ivfdata"]  # the shards are gone
    for index in (one_go, sharded):
        index.nprobe = 4
    expected_scores, expected_ids = one_go.search(queries, 10)
    scores, found = sharded.search(queries, 10)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


def test_the_merged_index_is_saved_beside_its_lists_and_opens_mapped_even_when_moved(tmp_path):
    store = _store(tmp_path / "db.sqlite")
    indexes = _indexes(tmp_path / "index", store, shard_size=1000)
    indexes.rebuild()
    version = store.data_version()
    windows = indexes.windows
    assert len(windows) == 4000 and windows.lists_file.parent == tmp_path / "index"
    names = sorted(p.name for p in (tmp_path / "index").iterdir())
    lists = [indexes.tracks.lists_file.name, windows.lists_file.name]
    sidecars = ["tracks-v40.json", "windows-v40.json"]  # each index's high-water mark
    assert names == sorted(["tracks-v40.faiss", "windows-v40.faiss", *sidecars, *lists])
    queries = _unit(np.random.default_rng(5), 20)
    expected = windows.search(queries, 10)

    shutil.move(tmp_path / "index", tmp_path / "elsewhere")  # a catalog copied or moved
    mapped = VectorIndex.load(tmp_path / "elsewhere", version, DIM, "windows", mmap=True)
    assert mapped.read_only and mapped.lists_file == tmp_path / "elsewhere" / windows.lists_file.name
    assert len(mapped) == 4000
    mapped.nprobe = windows.nprobe
    for got, want in zip(mapped.search(queries, 10), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rebuilding_again_and_changing_a_merged_index_keep_each_vector_once(tmp_path):
    store = _store(tmp_path / "db.sqlite", tracks=20)
    folder = tmp_path / "index"
    _indexes(folder, store, shard_size=500).rebuild()
    _indexes(folder, store, shard_size=700).rebuild()
    assert len(list(folder.glob("windows-*.ivfdata"))) == 1 and not list(folder.glob(".*"))

    # A writer opens the merged index, changes it and saves: the lists stay mapped from their file
    # (the rows taken out are left out of searches) until the save takes them into memory and
    # writes an ordinary index; the published lists file was never written to.
    writer = _indexes(folder, store)
    lists_file = writer.windows.lists_file
    before = lists_file.read_bytes()
    track_id = int(store.ids("tracks")[0])
    dropped = store.delete_track(track_id)
    writer.removed(track_id, dropped)
    assert lists_file.read_bytes() == before and writer.windows.lists_file == lists_file
    writer.save()
    assert not list(folder.glob("windows-*.ivfdata"))
    reopened = VectorIndex.load(folder, store.data_version(), DIM, "windows")
    stored_ids = _all_ids(reopened)
    assert len(stored_ids) == len(set(stored_ids)) == 2000 - len(dropped)
    assert set(stored_ids) == set(store.ids("windows").tolist())


def _all_ids(index: VectorIndex) -> list[int]:
    ivf = faiss.extract_index_ivf(index.index)
    lists = ivf.invlists
    return [
        int(i)
        for n in range(ivf.nlist)
        for i in faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n))
        if lists.list_size(n)
    ]


_KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
import mertsearch.storage.sharded as sharded
from tests.test_shards import _indexes
from mertsearch.storage.store import MetadataStore

point = sys.argv[2]
if point == "shard":  # killed while writing the second shard
    real = sharded.faiss.write_index
    def write(index, path):
        if ".windows-build-" in path and "shard-00001" in path:
            os.kill(os.getpid(), signal.SIGKILL)
        real(index, path)
    sharded.faiss.write_index = write
else:  # killed after the merge, before the index is saved
    real_merge = sharded.merge_on_disk
    def merge(*args):
        real_merge(*args)
        os.kill(os.getpid(), signal.SIGKILL)
    sharded.merge_on_disk = merge
folder = Path(sys.argv[1])
_indexes(folder / "index", MetadataStore(f"sqlite:///{folder / 'db.sqlite'}"), shard_size=600).rebuild("IVF16,SQ8")
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["shard", "merged"])
def test_a_killed_sharded_build_leaves_the_old_index_and_no_stray_files_after_the_next(tmp_path, point):
    store = _store(tmp_path / "db.sqlite", tracks=20)
    folder = tmp_path / "index"
    _indexes(folder, store).rebuild()  # the old index: small, in one file
    old = sorted(p.name for p in folder.iterdir())
    run = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(tmp_path), point], capture_output=True)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    assert list(folder.glob(".windows-build-*")) or list(folder.glob(".tracks-build-*"))
    # The old index files are untouched; a lists file published just before the kill may wait for the next save.
    assert [name for name in sorted(p.name for p in folder.iterdir()) if name[0] != "." and "ivf" not in name] == old
    assert len(VectorIndex.load(folder, store.data_version(), DIM, "windows")) == 2000  # still searchable

    _indexes(folder, store, shard_size=600).rebuild("IVF16,SQ8")
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.startswith(".")] and len([n for n in names if n.endswith(".ivfdata")]) == 2
    windows = VectorIndex.load(folder, store.data_version(), DIM, "windows", mmap=True)
    assert sorted(_all_ids(windows)) == store.ids("windows").tolist()


def test_a_save_removes_a_dead_writers_leftovers_and_keeps_a_live_writers(tmp_path):
    """Temporary files and build folders name their writer's pid: another writer (PostgreSQL) may be
    saving or building right now, and its files must survive this writer's save."""
    folder = tmp_path / "index"
    folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(gone.stdout), 1  # the first process exits before the save; pid 1 lives on
    leftovers = {
        folder / f".tracks-{dead}-abc.tmp": False,
        folder / f".tracks-{alive}-abc.tmp": True,
        folder / f".tracks-build-{dead}-abc": False,
        folder / f".tracks-build-{alive}-abc": True,
    }
    for path in leftovers:
        path.mkdir() if "build" in path.name else path.write_bytes(b"half")
    index = VectorIndex(DIM, "IDMap2,Flat")
    index.add(np.arange(3), _unit(np.random.default_rng(0), 3))
    index.save(folder, 1, "tracks")
    assert {path: path.exists() for path in leftovers} == leftovers
