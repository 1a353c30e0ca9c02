"""Index builds in bounded memory: a seeded training sample read by id, the store streamed in
batches into shards, saves of large indexes merged on disk; the same results as a build in one go;
and filters that allow a handful of tracks or none answered without searching the index."""

import tracemalloc

import faiss
import numpy as np
import pytest

import mertsearch.storage.sharded as sharded
import mertsearch.storage.vector_index as vector_index
import mertsearch.storage.vector_rows as vector_rows
from mertsearch.search.engine import Query, Rules, rank
from mertsearch.storage.indexes import Indexes, Layered
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.transform import VectorTransform
from mertsearch.storage.vector_index import VectorIndex
from tests.helpers import synthetic_track

DIM = 32
# PQ codes of 4 bits: 16 centroids a part, quick to train on a small catalog.
KINDS = ["IDMap2,Flat", "IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8x4", "OPQ4,IVF16,PQ4x4"]


@pytest.fixture(autouse=True)
def one_thread():
    """FAISS on one thread: OpenMP's threads spin against each other on a busy machine (training
    takes seconds instead of minutes); the results are the same."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def _unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(path, tracks=40, windows=100, dim=DIM, seed=0) -> MetadataStore:
    rng = np.random.default_rng(seed)
    store = MetadataStore(path if isinstance(path, str) else f"sqlite:///{path}")
    with store.session() as session, session.begin():
        for n in range(tracks):
            store._put_track(session, synthetic_track(n, _unit(rng, windows, dim), path=f"/music/{n}.flac"))
    return store


def _one_go(store, name, factory, transform) -> VectorIndex:
    """The index built as before: trained on the sample, then every vector added at once."""
    index = VectorIndex(DIM, factory)
    if index.needs_training:
        index.train(store.sample_vectors(name, sharded.train_sample_size(index), transform=transform))
    batches = list(store.track_vectors() if name == "tracks" else store.window_vectors())
    index.add(np.concatenate([ids for ids, _ in batches]), transform(np.concatenate([v for _, v in batches])))
    return index


def _same_results(got: VectorIndex, want: VectorIndex, queries: np.ndarray, k: int = 10) -> None:
    for index in (got, want):
        index.nprobe = 4
    got_scores, got_ids = got.search(queries, k)
    want_scores, want_ids = want.search(queries, k)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", KINDS)
@pytest.mark.parametrize("shard_size", [None, 700])
def test_a_streamed_build_gives_what_a_build_in_one_go_gives(tmp_path, monkeypatch, factory, shard_size):
    monkeypatch.setattr(vector_rows, "READ_BATCH", 300)  # batches that straddle the shards
    monkeypatch.setattr(vector_rows, "SAMPLE_CHUNK", 256)
    store = _store(tmp_path / "db.sqlite", tracks=260, windows=12)  # OPQ trains on 256 at least
    center = VectorTransform.fit("center", _unit(np.random.default_rng(3), 50) + 0.5)
    indexes = Indexes(tmp_path / "index", store, dim=DIM, factory=factory, transform=center, shard_size=shard_size)
    indexes.rebuild()
    queries = center(_unit(np.random.default_rng(5), 30))
    for name in ("tracks", "windows"):
        built = indexes.tracks.base if name == "tracks" else indexes.windows.base
        if shard_size and factory != "IDMap2,Flat":
            assert built.lists_file is not None  # built in shards, merged on disk
        assert sorted(built.ids().tolist()) == store.ids(name).tolist()
        _same_results(built, _one_go(store, name, factory, center), queries)


def test_an_hnsw_graph_built_from_batches_finds_as_much_as_one_built_in_one_go(tmp_path, monkeypatch):
    """A graph depends on the order its vectors come in (the build adds READ_BATCH at a time, as it
    added 50,000 before), so it is compared by recall against exact search, not id for id."""
    monkeypatch.setattr(vector_rows, "READ_BATCH", 300)
    store = _store(tmp_path / "db.sqlite", tracks=60, windows=50)
    indexes = Indexes(tmp_path / "index", store, dim=DIM, factory="IDMap2,HNSW16", transform=lambda v: v)
    indexes.rebuild()
    built = indexes.windows.base
    assert sorted(built.ids().tolist()) == store.ids("windows").tolist()
    queries = _unit(np.random.default_rng(5), 50)
    exact = _one_go(store, "windows", "IDMap2,Flat", lambda v: v).search(queries, 10)[1]

    def recall(index: VectorIndex) -> float:
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(index.search(queries, 10)[1], exact, strict=True)])

    assert recall(built) >= recall(_one_go(store, "windows", "IDMap2,HNSW16", lambda v: v)) - 0.05


def test_a_rebuild_streams_from_postgresql_in_batches(tmp_path, monkeypatch, postgres_url):
    """Through a server-side cursor (yield_per): psycopg would otherwise fetch every row first."""
    store = _store(postgres_url, tracks=20, windows=100)
    try:
        monkeypatch.setattr(vector_rows, "READ_BATCH", 300)
        monkeypatch.setattr(vector_rows, "SAMPLE_CHUNK", 256)
        reads = []
        real = vector_rows._arrays
        monkeypatch.setattr(vector_rows, "_arrays", lambda rows: reads.append(len(rows)) or real(rows))
        indexes = Indexes(
            tmp_path / "index", store, dim=DIM, factory="IVF16,SQ8", transform=lambda v: v, shard_size=700
        )
        indexes.rebuild()
        assert max(reads) <= 300
        queries = _unit(np.random.default_rng(5), 30)
        _same_results(indexes.windows.base, _one_go(store, "windows", "IVF16,SQ8", lambda v: v), queries)
    finally:
        store.close()


def test_the_training_sample_is_seeded_capped_and_read_by_id(tmp_path, monkeypatch):
    store = _store(tmp_path / "db.sqlite", tracks=20)
    reads = []
    real = vector_rows._arrays
    monkeypatch.setattr(vector_rows, "_arrays", lambda rows: reads.append(len(rows)) or real(rows))
    monkeypatch.setattr(vector_rows, "SAMPLE_CHUNK", 100)
    first = store.sample_vectors("windows", 450)
    assert first.shape == (450, DIM) and reads == [100, 100, 100, 100, 50]
    np.testing.assert_array_equal(store.sample_vectors("windows", 450), first)  # the same draw each time
    everything = store.sample_vectors("windows", 5000)  # all of them, in id order
    ids, vectors = next(store.window_vectors(batch=5000))
    np.testing.assert_array_equal(everything, vectors)
    # Capped in bytes as well as in count: FAISS copies the sample while it trains.
    assert sharded.train_sample_size(VectorIndex(DIM, "IVF1024,SQ8")) == sharded.TRAIN_PER_LIST * 1024
    monkeypatch.setattr(sharded, "TRAIN_BYTES", 4 * 768 * 1000)
    assert sharded.train_sample_size(VectorIndex(768, "IVF1024,SQ8")) == 1000


def test_a_rebuild_reads_the_store_in_batches_and_never_holds_every_vector(tmp_path, monkeypatch):
    """Vectors of 256 dims (1 KiB): 6,000 windows are 6 MiB. A rebuild in shards of 1,000 from
    batches of 256, trained on 500, must peak far below that in Python's memory (blobs and arrays;
    tracemalloc sees numpy's), and no read of the store may return more rows than its batch."""
    dim = 256
    store = _store(tmp_path / "db.sqlite", tracks=60, windows=100, dim=dim)
    monkeypatch.setattr(vector_rows, "READ_BATCH", 256)
    monkeypatch.setattr(vector_rows, "SAMPLE_CHUNK", 128)
    monkeypatch.setattr(sharded, "TRAIN_MAX", 500)
    reads = []
    real = vector_rows._arrays
    monkeypatch.setattr(vector_rows, "_arrays", lambda rows: reads.append(len(rows)) or real(rows))
    indexes = Indexes(tmp_path / "index", store, dim=dim, factory="IVF8,SQ8", transform=lambda v: v, shard_size=1000)
    everything = 6000 * dim * 4
    tracemalloc.start()
    try:
        indexes.rebuild()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(indexes.windows) == 6000 and indexes.windows.lists_file is not None
    assert max(reads) <= 256 and sum(reads) >= 6000 + 60  # every row read, a batch at a time
    assert peak < everything / 3, (
        f"peak {peak / 2**20:.1f} MiB of Python memory for {everything / 2**20} MiB of vectors"
    )


@pytest.mark.parametrize("factory", ["IVF16,SQ8", "OPQ4,IVF16,PQ4x4"])
def test_a_save_merges_a_large_index_on_disk_without_taking_its_lists_into_memory(tmp_path, monkeypatch, factory):
    """An ingest's saves (its last above all) and a removal's: rows added and taken out, written
    into a new lists file; the published one, which readers map, is never changed."""
    store = _store(tmp_path / "db.sqlite", tracks=260, windows=12)  # OPQ trains on 256 at least
    folder = tmp_path / "index"
    Indexes(folder, store, dim=DIM, factory=factory, transform=lambda v: v, shard_size=700).rebuild()
    writer = Indexes(folder, store, dim=DIM, factory=factory, transform=lambda v: v)
    writer.load()
    published = writer.windows.lists_file
    before = published.read_bytes()
    reader = open(published, "rb")  # noqa: SIM115 (a reader's view: the file outlives its name)
    trained = sharded._empty_copy(writer.windows.base.index)  # to build the reference alike
    monkeypatch.setattr(vector_index, "lists_to_memory", lambda index: pytest.fail("the lists were taken into memory"))
    rng = np.random.default_rng(9)
    for n in range(260, 275):  # added (more than CATCH_UP_SHARE of the index)
        record = synthetic_track(n, _unit(rng, 12), path=f"/music/{n}.flac")
        writer.stored(store.put_track(record), record.vector, record.window_vectors)
    gone = int(store.ids("tracks")[3])
    writer.removed(gone, store.delete_track(gone))
    # Stored again: the same track id, in the base's rows taken out and in the rows added.
    record = synthetic_track(5, _unit(rng, 12), path="/music/5.flac")
    writer.stored(store.put_track(record), record.vector, record.window_vectors)
    writer.save()

    with reader:
        assert reader.read() == before  # never written to; now unlinked, where readers still map it
    assert not published.exists()
    saved = VectorIndex.load(folder, store.data_version(), DIM, "windows")
    assert saved.lists_file is not None and saved.lists_file != published
    assert sorted(saved.ids().tolist()) == store.ids("windows").tolist()
    reference = VectorIndex(DIM, index=faiss.deserialize_index(trained))
    ids, vectors = next(store.window_vectors(batch=10_000))
    reference.add(ids, vectors)
    _same_results(saved, reference, _unit(np.random.default_rng(4), 20))
    tracks = VectorIndex.load(folder, store.data_version(), DIM, "tracks")
    assert sorted(tracks.ids().tolist()) == store.ids("tracks").tolist()  # the track stored again once
    again = store.track_by_path(record.path).id
    scores, found = tracks.search(record.vector[None, :], 1, allowed=np.array([again]))
    assert found[0, 0] == again and scores[0, 0] > 0.5, scores  # its new vector, not the old one


def _count_searches(monkeypatch) -> list:
    searched = []
    for cls in (VectorIndex, Layered):
        real = cls.search
        monkeypatch.setattr(
            cls, "search", lambda self, *a, _real=real, **kw: searched.append(type(self)) or _real(self, *a, **kw)
        )
    return searched


@pytest.mark.parametrize("factory", KINDS)
@pytest.mark.parametrize("mode", ["tracks", "segments"])
def test_a_filter_of_a_handful_of_tracks_or_none_searches_no_index(tmp_path, monkeypatch, factory, mode):
    store = _store(tmp_path / "db.sqlite", tracks=260, windows=10)
    indexes = Indexes(tmp_path / "index", store, dim=DIM, factory=factory, transform=lambda v: v)
    indexes.load()
    rng = np.random.default_rng(2)
    windows = _unit(rng, 3)
    vector = windows.mean(axis=0) / np.linalg.norm(windows.mean(axis=0))
    query = Query(vector, windows, np.array([[0.0, 5.0], [5.0, 10.0], [10.0, 15.0]]))
    searched = _count_searches(monkeypatch)

    def ranked(allowed):
        return rank(
            mode=mode,
            tracks_index=indexes.tracks,
            windows_index=indexes.windows,
            store=store,
            query=query,
            k=5,
            rules=Rules(allowed=allowed),
        )

    assert ranked(np.array([], dtype=np.int64)) == []
    two = store.ids("tracks")[[17, 150]]
    found = ranked(two)
    assert searched == []
    assert sorted(r.track_id for r in found) == sorted(two.tolist())
    if mode == "tracks":  # scored exactly from the stored vectors, best first
        rows = store.tracks_by_id(two.tolist())
        exact = [float(np.frombuffer(rows[r.track_id].vector, np.float32) @ vector) for r in found]
        np.testing.assert_allclose([r.score for r in found], exact, rtol=1e-5)
        assert exact == sorted(exact, reverse=True)
    ranked(store.ids("tracks")[:100])  # a broad filter still searches the index
    assert searched


@pytest.mark.parametrize("kind", ["center", "whiten"])
def test_a_transform_fitted_batch_by_batch_equals_one_fitted_on_every_vector(kind):
    rng = np.random.default_rng(6)
    vectors = _unit(rng, 500) + rng.normal(0.3, 0.1, size=DIM).astype(np.float32)
    batched = VectorTransform.fit_batches(kind, lambda: (vectors[i : i + 64] for i in range(0, 500, 64)))
    # As the fit on every vector at once computes it.
    mean = vectors.mean(axis=0)
    np.testing.assert_allclose(batched.mean, mean, rtol=1e-5, atol=1e-6)
    if kind == "whiten":
        centered = (vectors - mean).astype(np.float64)
        values, vecs = np.linalg.eigh(centered.T @ centered / (len(vectors) - 1))
        keep = values > 1e-4 * values.max()
        np.testing.assert_allclose(batched.matrix, (vecs[:, keep] / np.sqrt(values[keep])) @ vecs[:, keep].T, atol=1e-3)
    queries = _unit(rng, 20)
    np.testing.assert_allclose(batched(queries), VectorTransform.fit(kind, vectors)(queries), atol=1e-5)
