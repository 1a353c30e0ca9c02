"""A request's work is bounded by its k and its query, never by the catalog: a ranking that cannot
fill k stops at a ceiling of candidates read and says it is partial, segment candidates are
aligned only until none left can displace the chosen, a long clip is placed without scoring every
shift of a long track, and several seeds' lists are results only for the k fused ones."""

import tracemalloc

import numpy as np
import pytest
import sqlalchemy

from mertsearch import Catalog
from mertsearch.search import engine
from mertsearch.search.engine import Query, Rules, align, rank
from mertsearch.search.placement import BLEND_STEP, aligned_score
from mertsearch.storage.indexes import Indexes
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import FLAT
from mertsearch.text import fold
from tests.helpers import synthetic_track

DIM = 16
HOP = 2.5
TRACKS = 600
ARTISTS = 5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """600 tracks of 4 windows by 5 artists, and their exact indexes."""
    folder = tmp_path_factory.mktemp("bounds")
    rng = np.random.default_rng(3)
    store = MetadataStore(f"sqlite:///{folder / 'db.sqlite'}")
    for n in range(TRACKS):
        windows = _unit(rng.normal(size=DIM) + 0.3 * rng.normal(size=(4, DIM)))
        tags = {"artist": f"artist {n % ARTISTS}", "album": f"album {n}"}
        store.put_track(synthetic_track(n, windows, hop=HOP, window_s=HOP, tags=tags))
    indexes = Indexes(folder / "indexes", store, dim=DIM, factory=FLAT, transform=lambda v: v)
    indexes.rebuild()
    return store, indexes


def _query(store, track_id: int) -> Query:
    times, vectors = store.windows_of([track_id])[track_id]
    return Query(_unit(vectors.mean(0)), vectors, times)


def _rank(library, mode: str, k: int, **rules):
    store, indexes = library
    query = _query(store, int(store.ids("tracks")[0]))
    return rank(
        mode=mode,
        tracks_index=indexes.tracks,
        windows_index=indexes.windows,
        store=store,
        query=query,
        k=k,
        rules=Rules(**rules),
        transform=lambda v: v,
        tolerance=HOP / 2,
    )


@pytest.fixture
def reads(library, monkeypatch):
    """The number of rows each ``tracks_by_id`` call of the store reads."""
    store, _ = library
    sizes: list[int] = []
    original = store.tracks_by_id

    def counted(ids):
        sizes.append(len(ids))
        return original(ids)

    monkeypatch.setattr(store, "tracks_by_id", counted)
    return sizes


def test_a_ranking_that_cannot_fill_k_stops_at_its_ceiling_and_says_it_is_partial(library, reads, monkeypatch):
    monkeypatch.setattr(engine, "FETCH_CEILING", 64)
    # Five artists cannot give ten tracks at one per artist: finding that out reads 64 rows, not 600.
    results = _rank(library, "tracks", k=10, per_artist=1)
    assert len(results) == ARTISTS and results.partial
    assert max(reads) <= 64
    # A ranking that fills k is not partial, nor one that read every track before it ran out.
    assert not _rank(library, "tracks", k=5, per_artist=1).partial
    monkeypatch.setattr(engine, "FETCH_CEILING", 4096)
    results = _rank(library, "tracks", k=10, per_artist=1)
    assert len(results) == ARTISTS and not results.partial


@pytest.fixture
def aligned(monkeypatch) -> list[int]:
    """One entry per candidate a ranking scores by alignment (engine.aligned_score)."""
    calls: list[int] = []

    def counted(times, vectors, query, tolerance, **options):
        calls.append(1)
        return aligned_score(times, vectors, query, tolerance, **options)

    monkeypatch.setattr(engine, "aligned_score", counted)
    return calls


def test_segment_candidates_are_aligned_only_until_the_chosen_cannot_change(library, aligned, monkeypatch):
    monkeypatch.setattr(engine, "ALIGN_BATCH", 4)
    store, _ = library
    query = _query(store, int(store.ids("tracks")[0]))
    best = _rank(library, "segments", k=3)
    # The same three as aligning every track of the catalog would choose, for a few alignments.
    every = store.windows_of(store.ids("tracks").tolist())
    scores = {t: align(times, vectors, query, HOP / 2).score for t, (times, vectors) in every.items()}
    assert [r.track_id for r in best] == sorted(scores, key=lambda t: -scores[t])[:3]
    assert len(aligned) < 64  # the first round alone finds up to 4 windows x 16 hits

    # A ranking that cannot fill k aligns at most its ceiling of candidates, and says so.
    monkeypatch.setattr(engine, "ALIGN_CEILING", 40)
    aligned.clear()
    results = _rank(library, "segments", k=10, per_artist=1)
    assert len(results) == ARTISTS and results.partial
    assert len(aligned) <= 40 + engine.ALIGN_BATCH


def test_a_clip_longer_than_the_tracks_aligns_only_those_that_could_cover_enough_of_it(library, aligned, monkeypatch):
    monkeypatch.setattr(engine, "ALIGN_BATCH", 4)
    store, indexes = library
    # Ten tracks of 4 windows played one after the other: each covers a tenth of the clip, so no
    # track aligns above 0.1 however well one of its windows matches one of the clip's.
    played = store.ids("tracks").tolist()[:10]
    windows = store.windows_of(played)
    vectors = np.concatenate([windows[t][1] for t in played])
    starts = np.arange(len(vectors)) * HOP
    query = Query(_unit(vectors.mean(0)), vectors, np.stack([starts, starts + HOP], axis=1))
    best = rank(
        mode="segments",
        tracks_index=indexes.tracks,
        windows_index=indexes.windows,
        store=store,
        query=query,
        k=3,
        transform=lambda v: v,
        tolerance=HOP / 2,
    )
    every = store.windows_of(store.ids("tracks").tolist())
    scores = sorted((align(times, v, query, HOP / 2).score for times, v in every.values()), reverse=True)
    assert [r.score for r in best] == pytest.approx(scores[:3])
    assert {r.track_id for r in best} <= set(played)
    # Bounded by their best pair alone, 114 of them are aligned.
    assert len(aligned) < 64


def test_a_long_clip_is_placed_in_bounded_memory_and_found_where_it_was_cut():
    # A 30 min track and a 2 min clip cut from it at 1000.3 s, with probe windows half a hop in:
    # scoring every shift of the whole track on the 0.05 s grid would hold about (1800 + 120) / 0.05
    # shifts x 96 windows per array (hundreds of MB); near the best shifts only, a few MB.
    rng = np.random.default_rng(0)
    omega, phase = rng.normal(0, 0.2, 256), rng.uniform(0, 2 * np.pi, 256)

    def vectors_at(starts):
        return _unit(np.cos(np.outer(starts, omega) + phase))

    track_starts = np.arange(0, 1800, HOP)
    query_starts = np.arange(0, 120 - HOP + 1e-9, HOP)
    probe_starts = query_starts + HOP / 2
    cut = 1000.3
    windows = vectors_at(cut + query_starts)
    query = Query(
        _unit(windows.mean(0)),
        windows,
        np.stack([query_starts, query_starts + HOP], axis=1),
        vectors_at(cut + probe_starts),
        np.stack([probe_starts, probe_starts + HOP], axis=1),
    )
    track_times = np.stack([track_starts, track_starts + HOP], axis=1)
    tracemalloc.start()
    try:
        found = align(track_times, vectors_at(track_starts), query, HOP / 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.offset == pytest.approx(cut, abs=HOP / 4)
    whole_grid = (1800 + 120) / BLEND_STEP * 2 * len(query_starts) * 8  # one float64 array
    assert peak < whole_grid


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_model):
    """A catalog of 300 tracks of 2 windows by 30 artists, at random (tiny model: 32 dimensions)."""
    directory = tmp_path_factory.mktemp("seeds") / "cat"
    rng = np.random.default_rng(4)
    with Catalog.create(directory, model=str(tiny_model), layer=3) as cat:
        for n in range(300):
            windows = _unit(rng.normal(size=32) + 0.2 * rng.normal(size=(2, 32)))
            cat.store.put_track(synthetic_track(n, windows, tags={"artist": f"artist {n % 30}"}))
        cat.rebuild_index()
    return directory


def test_several_seeds_read_windows_only_for_the_results_they_return(seeded, monkeypatch):
    with Catalog.open(seeded) as cat:
        ids = cat.store.ids("tracks").tolist()
        read: list[int] = []
        original = cat.store.windows_of

        def counted(track_ids):
            read.extend(track_ids)
            return original(track_ids)

        monkeypatch.setattr(cat.store, "windows_of", counted)
        results = cat.similar(ids[:3], k=5)
        assert len(results) == 5 and not results.partial
        # The seeds' own windows (for their queries), then the five results': not each seed's
        # neighbourhood of 30 tracks.
        assert len(read) <= 3 + 5
        # A radio after a long history looks it up at once and still fills k.
        history = ids[:500] if len(ids) >= 500 else ids[:250]
        assert len(cat.radio(history, k=5)) == 5


def test_a_look_up_by_words_goes_through_an_index_in_step_with_every_change(tmp_path, database):
    url = database or f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = MetadataStore(url)
    rng = np.random.default_rng(0)
    artists = ["Café del Mar", "Cafe\u0301 Tacvba", "Кино", "坂本龍一", "Sigur Rós", "100% Pure", "a_b", 'The "Quotes"']
    for n, artist in enumerate(artists):
        store.put_track(
            synthetic_track(n, _unit(rng.normal(size=(2, DIM))), tags={"artist": artist, "title": f"Song {n}"})
        )

    def found(needle: str) -> list[str]:
        total, rows = store.find_tracks(needle, limit=100, offset=0)
        assert total == len(rows)
        return sorted(row.path for row in rows)

    def expected(needle: str) -> list[str]:
        # The look-up as a reader would do it by eye: the needle within a tag or the path, any case.
        tracks = store.tracks_by_id(store.ids("tracks").tolist()).values()
        return sorted(
            t.path
            for t in tracks
            if any(fold(needle) in fold(field) for field in (t.title, t.artist, t.album, t.path) if field)
        )

    needles = ["CAFÉ", "café del", "кино", "坂本龍", "坂本", "rós", "100%", "a_b", '"quotes"', "song", "so", "zzz"]
    assert [found(n) for n in needles] == [expected(n) for n in needles]
    # A retag, a removal and a new track are found as they are now.
    first = store.track_by_path("/synthetic/00000.flac")
    store.update_file(first.id, tags={"artist": "Renamed Band"})
    store.delete_track(store.track_by_path("/synthetic/00002.flac").id)
    store.put_track(synthetic_track(9, _unit(rng.normal(size=(2, DIM))), tags={"artist": "Кинотеатр"}))
    needles += ["renamed", "café del mar"]
    assert [found(n) for n in needles] == [expected(n) for n in needles]
    assert found("кино") == ["/synthetic/00009.flac"]

    if store.dialect == "sqlite":
        # The look-up reads the index's matches, not every track (whose rows hold their vectors).
        statements = []

        def seen(_connection, _cursor, statement, parameters, _context, _many):
            statements.append((statement, parameters))

        sqlalchemy.event.listen(store.engine, "before_cursor_execute", seen)
        store.find_tracks("café del", limit=10, offset=0)
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", seen)
        with store.engine.connect() as connection:
            plans = [
                connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all() for sql, params in statements
            ]
        assert plans and not [step for plan in plans for step in plan if step[-1] == "SCAN tracks"]
    else:
        with store.engine.connect() as connection:
            indexes = connection.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE tablename = 'tracks'").scalars()
            assert any("gin_trgm_ops" in index for index in indexes)
    store.close()
