"""Filtered search returns k results whenever k tracks match, on every index kind, even when the
allowed tracks sit in inverted lists a plain search would not probe."""

import numpy as np
import pytest
from sqlalchemy import event

from mertsearch import Catalog
from mertsearch.search.engine import Query, Rules, align, rank
from mertsearch.storage.filters import Filters
from mertsearch.storage.indexes import Indexes
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import FLAT, VectorIndex
from tests.helpers import synthetic_track

DIM = 32
HOP = 2.5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng, count: int, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors around ``clusters`` random centres, each vector's cluster)."""
    centres = rng.normal(size=(clusters, DIM))
    labels = rng.integers(0, clusters, count)
    return _unit(centres[labels] + 0.3 * rng.normal(size=(count, DIM))), labels


# --- the index alone -------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8"])
def test_an_inverted_file_finds_allowed_ids_that_sit_in_one_far_cluster(factory):
    rng = np.random.default_rng(0)
    vectors, labels = _clustered(rng, 20_000, 64)
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 7
    query = vectors[:1]
    far = int(np.argmin([vectors[labels == c].mean(0) @ query[0] for c in range(64)]))
    allowed = ids[labels == far][:50]
    ivf = VectorIndex(DIM, factory)
    ivf.train(vectors[:5000])
    ivf.add(ids, vectors)
    exact = VectorIndex(DIM, FLAT)
    exact.add(ids, vectors)

    _, found = ivf.search(query, 10, allowed=allowed)
    _, expected = exact.search(query, 10, allowed=allowed)
    assert (found >= 0).sum() == 10 and set(found[0]) <= set(allowed)
    if factory.endswith("Flat"):
        np.testing.assert_array_equal(found, expected)
    else:  # compressed codes approximate the scores: most of the best
        assert len(set(found[0]) & set(expected[0])) >= 7
    # An allowed id in the query's own cluster is found as well.
    near = ids[labels == labels[0]][:1]
    assert ivf.search(query, 1, allowed=near)[1][0, 0] == near[0]


def test_an_inverted_file_probes_more_lists_when_those_probed_hold_fewer_than_k():
    rng = np.random.default_rng(1)
    vectors, _ = _clustered(rng, 5000, 64)
    ivf = VectorIndex(DIM, "IVF64,Flat")
    ivf.train(vectors)
    ivf.add(np.arange(len(vectors)), vectors)
    ivf.nprobe = 1
    _, found = ivf.search(vectors[:3], 500)
    assert (found >= 0).all()
    _, one_list = ivf.search(vectors[:3], 500, nprobe=1)  # as asked: one list, padded
    assert (one_list < 0).any()


# --- the engine over a store ----------------------------------------------------------------

TRACKS, WINDOWS = 40, 50


def _store(url: str) -> MetadataStore:
    """40 tracks of 50 windows: tracks 0-19 around one centre, 20-39 around the opposite one, each
    track around its own point there and each window near its track's point."""
    rng = np.random.default_rng(2)
    centre = rng.normal(size=DIM)
    store = MetadataStore(url)
    for n in range(TRACKS):
        point = (centre if n < TRACKS // 2 else -centre) + 0.5 * rng.normal(size=DIM)
        windows = _unit(point + 0.4 * rng.normal(size=(WINDOWS, DIM)))
        path = f"/music/{'near' if n < TRACKS // 2 else 'far'}/{n:02d}.flac"
        store.put_track(synthetic_track(n, windows, hop=HOP, path=path, tags={"artist": f"artist {n % 10}"}))
    return store


def _query(store: MetadataStore, track_id: int) -> Query:
    """Five windows of a stored track, as a clip of it."""
    times, vectors = store.windows_of([track_id])[track_id]
    return Query(_unit(vectors[10:15].mean(0)), vectors[10:15], times[10:15] - times[10])


def _indexes(folder, store, factory, shard_size=None) -> Indexes:
    indexes = Indexes(folder, store, dim=DIM, factory=factory, transform=lambda v: v, shard_size=shard_size)
    indexes.rebuild()
    for index in (indexes.tracks, indexes.windows):
        index.nprobe = 1  # as in a large catalog: a plain search probes a small part of the lists
    return indexes


def _ranked(indexes, store, query, mode, allowed, k, **rules) -> list[int]:
    results = rank(
        mode=mode,
        tracks_index=indexes.tracks,
        windows_index=indexes.windows,
        store=store,
        query=query,
        k=k,
        rules=Rules(allowed=allowed, **rules),
        transform=lambda v: v,
        tolerance=HOP / 2,
    )
    return [r.track_id for r in results]


def _best_aligned(store, query, allowed, k) -> list[int]:
    """The k allowed tracks whose windows align best with the query's, by brute force."""
    windows = store.windows_of(allowed)
    scores = {t: align(times, vectors, query, HOP / 2)[0] for t, (times, vectors) in windows.items()}
    return sorted(scores, key=lambda t: -scores[t])[:k]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(f"sqlite:///{tmp_path_factory.mktemp('filters') / 'db.sqlite'}")


@pytest.fixture(scope="module")
def kinds(tmp_path_factory, store):
    """The store's indexes of each kind, built once for the module (searches do not change them)."""
    folder = tmp_path_factory.mktemp("indexes")
    built = {}

    def indexes(factory: str) -> Indexes:
        if factory not in built:
            built[factory] = _indexes(folder / factory.replace(",", "-"), store, factory)
        return built[factory]

    return indexes


FILTERS = {
    "three far tracks": (lambda ids: ids[[21, 30, 37]], 3),
    "all far tracks": (lambda ids: ids[TRACKS // 2 :], 10),
    "every other track": (lambda ids: ids[::2], 10),
}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("mode", ["segments", "tracks"])
@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8x4np", FLAT])
def test_filtered_search_fills_k_on_every_index_kind_as_an_exact_search_does(store, kinds, factory, mode, name):
    pick, k = FILTERS[name]
    track_ids = store.ids("tracks")
    allowed = pick(track_ids)
    query = _query(store, int(track_ids[3]))  # a near track: far tracks sit in lists it does not probe
    found = _ranked(kinds(factory), store, query, mode, allowed, k)
    assert len(found) == k and set(found) <= set(allowed.tolist())
    assert found == _ranked(kinds(FLAT), store, query, mode, allowed, k)
    if mode == "segments":
        assert found == _best_aligned(store, query, allowed.tolist(), k)


def test_filtered_search_fills_k_with_diversity_rules_and_exclusions(store, kinds):
    track_ids = store.ids("tracks")
    indexes = kinds("IVF16,Flat")
    query = _query(store, int(track_ids[3]))
    far = track_ids[TRACKS // 2 :]
    for mode in ("segments", "tracks"):
        # Ten artists among the far tracks: one each, and none of the first far track's recording.
        found = _ranked(indexes, store, query, mode, far, 9, per_artist=1, exclude={int(far[0])})
        assert len(found) == 9 and int(far[0]) not in found
        assert len(_ranked(indexes, store, query, mode, far, 11, per_artist=1)) == 10  # only ten artists
        assert _ranked(indexes, store, query, mode, track_ids[:0], 5) == []


def test_a_sharded_on_disk_index_fills_k_for_filtered_searches(tmp_path, store, kinds):
    indexes = _indexes(tmp_path / "index", store, "IVF16,Flat", shard_size=500)
    assert indexes.windows.lists_file is not None  # merged on disk
    mapped = Indexes(tmp_path / "index", store, dim=DIM, factory="IVF16,Flat", transform=lambda v: v, mmap=True)
    for index in (mapped.tracks, mapped.windows):
        index.nprobe = 1
    assert mapped.windows.lists_file is not None and mapped.windows.read_only
    track_ids = store.ids("tracks")
    query = _query(store, int(track_ids[3]))
    exact = kinds(FLAT)
    for mode in ("segments", "tracks"):
        for allowed, k in ((track_ids[[25, 33]], 2), (track_ids[TRACKS // 2 :], 10), (track_ids[1::2], 10)):
            found = _ranked(mapped, store, query, mode, allowed, k)
            assert len(found) == k and found == _ranked(exact, store, query, mode, allowed, k)


def test_filtered_search_fills_k_on_postgresql(tmp_path, postgres_url):
    store = _store(postgres_url)
    try:
        track_ids = store.ids("tracks")
        query = _query(store, int(track_ids[3]))
        indexes, exact = _indexes(tmp_path / "ivf", store, "IVF16,Flat"), _indexes(tmp_path / "flat", store, FLAT)
        for mode in ("segments", "tracks"):
            for allowed, k in ((track_ids[[25, 33]], 2), (track_ids[TRACKS // 2 :], 10), (track_ids[1::2], 10)):
                found = _ranked(indexes, store, query, mode, allowed, k)
                assert len(found) == k and found == _ranked(exact, store, query, mode, allowed, k)
    finally:
        store.close()


# --- a catalog ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, tiny_model, music_source):
    """A catalog of six tracks, shared by the module's tests (which may change its index kind)."""
    with Catalog.create(tmp_path_factory.mktemp("filtered") / "cat", model=str(tiny_model), layer=2) as cat:
        assert cat.index_paths([music_source]).added == 6
        yield cat, music_source


def _searches(cat, music) -> dict:
    """Filtered searches and similars in both modes: {(mode, what): results}."""
    out = {}
    paths = sorted(str(p) for p in music.rglob("*.*"))
    for mode in ("segments", "tracks"):
        out[mode, "sub"] = [
            r.track_id for r in cat.search(music / "a.wav", k=2, mode=mode, filters=_under(music / "sub"))
        ]
        for path in paths:  # each track alone, found from another one
            seed = paths[0] if path != paths[0] else paths[1]
            out[mode, path] = [r.path for r in cat.similar(seed, k=1, mode=mode, filters=_under(path))]
    return out


def _under(path) -> Filters:
    return Filters(path_prefix=(str(path),))


def test_a_catalog_with_inverted_files_finds_k_filtered_tracks_as_with_exact_indexes(catalog):
    cat, music = catalog
    cat.rebuild_index(FLAT)
    exact = _searches(cat, music)
    cat.rebuild_index("IVF4,Flat")
    for index in (cat.indexes.tracks, cat.indexes.windows):
        index.nprobe = 1  # as in a large catalog: a plain search probes a small part of the lists
    assert _searches(cat, music) == exact
    for (mode, what), found in exact.items():
        assert len(found) == (2 if what == "sub" else 1), (mode, what)
        if what != "sub":
            assert found == [what]


def test_a_filter_selects_tracks_only(catalog):
    cat, music = catalog
    statements = []

    def record(connection, cursor, statement, *args):
        statements.append(statement)

    event.listen(cat.store.engine, "before_cursor_execute", record)
    try:
        for mode in ("segments", "tracks"):
            assert len(cat.search(music / "a.wav", k=3, mode=mode, filters=_under(music))) == 3
    finally:
        event.remove(cat.store.engine, "before_cursor_execute", record)
    filtering = [s for s in statements if "LIKE" in s]
    assert filtering and not [s for s in filtering if "windows" in s], filtering


def test_a_broad_filter_reads_the_windows_of_its_hits_not_all_of_its_tracks(store, kinds, monkeypatch):
    track_ids = store.ids("tracks")
    allowed = track_ids[:-1]
    tracks_read, windows_looked_up = set(), []
    windows_of, window_places = store.windows_of, store.window_places
    monkeypatch.setattr(store, "windows_of", lambda ids: tracks_read.update(ids) or windows_of(ids))
    monkeypatch.setattr(store, "window_places", lambda ids: windows_looked_up.extend(ids) or window_places(ids))
    query = _query(store, int(track_ids[3]))
    found = _ranked(kinds("IVF16,Flat"), store, query, "segments", allowed, 2)
    assert len(found) == 2
    # The index was searched, and only its hits' windows and tracks were read.
    assert 0 < len(windows_looked_up) < len(allowed) * WINDOWS / 4
    assert len(tracks_read) < len(allowed) / 2
