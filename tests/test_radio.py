"""Queue continuation on `similar` (exclusions, no-repeat rules, a seeded shuffle), several seeds by
agreement or by average, and radio, on catalogs whose track vectors are chosen by hand, so the
right answers are known without running the code: in the library, the command line, HTTP and the
client."""

import dataclasses
import json
import math

import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.client import ApiError, Client
from mertsearch.errors import InvalidArgumentError, TrackNotFoundError
from mertsearch.search import SearchOptions, SearchResult, TimeRange
from mertsearch.search.radio import shuffled
from tests.helpers import cli, synthetic_track
from tests.servers import running

DIM = 32  # the tiny model's
# (artist, album) of c1..c8, the tracks at 5, 10, ..., 40 degrees from the seed S.
LINE_TAGS = [("A", "X"), ("B", "Y"), ("A", "X"), ("C", "Z"), ("D", "W"), ("B", "Y"), ("E", "V"), ("F", "U")]


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _basis(i: int, scale: float = 1.0) -> np.ndarray:
    vector = np.zeros(DIM)
    vector[i] = scale
    return vector


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, tiny_model):
    """(directory, ids by name). Three groups in orthogonal planes, so no group's track is near
    another group's: the seed S (e0, artist S) with c1..c8 at 5, 10, ..., 40 degrees from it
    towards e1 (tags LINE_TAGS) and c2b, another file of c2 (at 10.5 degrees); cluster A (a0..a4 about e2) and
    cluster B (b0..b4 about e3), each within 13 degrees of its centre, and m0..m2 midway between
    the two (about e2 + e3)."""
    directory = tmp_path_factory.mktemp("radio") / "cat"
    ids: dict[str, int] = {}
    with Catalog.create(directory, model=str(tiny_model), layer=3) as cat:
        assert cat.manifest.encoder.dim == DIM

        def put(name: str, vector, tags=None, duplicate_of=None) -> None:
            record = synthetic_track(len(ids), np.stack([_unit(vector)] * 2), path=f"/music/{name}.flac", tags=tags)
            if duplicate_of is not None:
                record = dataclasses.replace(record, duplicate_of=ids[duplicate_of])
            ids[name] = cat.store.put_track(record).track_id

        put("S", _basis(0), {"artist": "S", "album": "Seed"})
        for n, (artist, album) in enumerate(LINE_TAGS, start=1):
            angle = math.radians(5 * n)
            put(f"c{n}", _basis(0, math.cos(angle)) + _basis(1, math.sin(angle)), {"artist": artist, "album": album})
            if n == 2:  # a hair further from S than c2, so c2 stands for the recording
                near = math.radians(10.5)
                put("c2b", _basis(0, math.cos(near)) + _basis(1, math.sin(near)), {"artist": artist}, "c2")
        for n in range(5):
            put(f"a{n}", _basis(2) + _basis(4, 0.05 * n))
            put(f"b{n}", _basis(3) + _basis(5, 0.05 * n))
        for n in range(3):
            put(f"m{n}", _basis(2) + _basis(3) + _basis(8, 0.1 * n))
        cat.rebuild_index()
    return directory, ids


def _ids(results) -> list[int]:
    return [r.track_id for r in results]


def test_exclude_leaves_out_played_tracks_and_the_other_files_of_their_recordings(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        assert _ids(cat.similar(ids["S"], k=3)) == [ids["c1"], ids["c2"], ids["c3"]]
        # Excluding one file of c2's recording drops the other file too.
        assert _ids(cat.similar(ids["S"], k=3, exclude=[ids["c2b"]])) == [ids["c1"], ids["c3"], ids["c4"]]
        assert _ids(cat.similar(ids["S"], k=3, exclude=["/music/c2.flac", ids["c1"]])) == [
            ids["c3"],
            ids["c4"],
            ids["c5"],
        ]
        # The seeds are never results, even when excluded or given twice.
        assert ids["S"] not in _ids(cat.similar([ids["S"], ids["S"]], k=20, exclude=[ids["S"]]))
        with pytest.raises(TrackNotFoundError):
            cat.similar(ids["S"], exclude=[9999])


def test_no_repeat_rules_count_from_the_end_of_the_exclusions(catalog):
    directory, ids = catalog
    played = [ids["c5"], ids["c1"], ids["c2"]]  # artists D, A, B, oldest first
    with Catalog.open(directory) as cat:
        assert _ids(cat.similar(ids["S"], k=3, exclude=played)) == [ids["c3"], ids["c4"], ids["c6"]]
        # The last two played are by A and B: c3 (A) and c6 (B) go.
        assert _ids(cat.similar(ids["S"], k=3, exclude=played, no_repeat_artist=2)) == [
            ids["c4"],
            ids["c7"],
            ids["c8"],
        ]
        assert _ids(cat.similar(ids["S"], k=3, exclude=played, no_repeat_artist=0)) == [ids["c3"], ids["c4"], ids["c6"]]
        # Album X by A was played last: c3 (A, X) goes, other albums stay.
        found = _ids(cat.similar(ids["S"], k=3, exclude=[ids["c1"]], no_repeat_album=1))
        assert found == [ids["c2"], ids["c4"], ids["c5"]]


def test_shuffle_is_a_seeded_draw_among_the_best(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        plain = _ids(cat.similar(ids["S"], k=3))
        assert _ids(cat.similar(ids["S"], k=3, shuffle=0.0, seed=5)) == plain
        # A temperature far below the score gaps (about 0.01) leaves the ranking as it is.
        assert _ids(cat.similar(ids["S"], k=3, shuffle=1e-4, seed=5)) == plain
        pool = set(_ids(cat.similar(ids["S"], k=12)))
        draws = {seed: _ids(cat.similar(ids["S"], k=3, shuffle=1.0, seed=seed)) for seed in range(8)}
        for seed, drawn in draws.items():
            assert drawn == _ids(cat.similar(ids["S"], k=3, shuffle=1.0, seed=seed))  # the same draw again
            assert len(set(drawn)) == 3 and set(drawn) <= pool
        assert len({tuple(drawn) for drawn in draws.values()}) > 1


def _result(track_id: int, similarity: float) -> SearchResult:
    return SearchResult(track_id, f"/{track_id}", None, None, None, similarity, TimeRange(0, 1), TimeRange(0, 1))


def test_shuffle_draws_in_proportion_to_exp_similarity_over_the_temperature():
    results = [_result(1, 0.9), _result(2, 0.6), _result(3, 0.3)]
    firsts = [shuffled(results, 1, 0.2, seed)[0].track_id for seed in range(4000)]
    weights = np.exp(np.array([0.9, 0.6, 0.3]) / 0.2)
    expected = weights / weights.sum()  # 0.786, 0.175, 0.039
    observed = np.bincount(firsts, minlength=4)[1:] / len(firsts)
    assert np.abs(observed - expected).max() < 0.03
    # Without replacement: a draw of all three holds each once.
    assert sorted(r.track_id for r in shuffled(results, 3, 0.2, 1)) == [1, 2, 3]


def test_seeds_in_two_clusters_agree_on_their_clusters_and_average_midway(catalog):
    directory, ids = catalog
    seeds = [ids["a0"], ids["b0"]]
    with Catalog.open(directory) as cat:
        average = _ids(cat.similar(seeds, k=3, combine="average"))
        assert sorted(average) == sorted(ids[f"m{n}"] for n in range(3))
        agreement = _ids(cat.similar(seeds, k=4))
        assert sorted(agreement) == sorted(ids[name] for name in ("a1", "a2", "b1", "b2"))
        # One seed: the same ranking either way.
        one = _ids(cat.similar(ids["a0"], k=6))
        assert one == _ids(cat.similar(ids["a0"], k=6, combine="average"))
        assert one[:4] == [ids["a1"], ids["a2"], ids["a3"], ids["a4"]]


def test_radio_continues_a_history_without_repeating_it_or_its_artists(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        # Each artist once (A's c3 waits), none of S.
        first = _ids(cat.radio([ids["S"]], k=4))
        assert first == [ids["c1"], ids["c2"], ids["c4"], ids["c5"]]
        history = [ids["S"], *first]
        # Seeds: c2, c4, c5, left out with the rest of the history and c2's other file; no artist of
        # the last 3 played (B, C, D: c6 goes) and no album of the last 5 (A's X: c3 goes).
        assert sorted(_ids(cat.radio(history, k=2))) == sorted([ids["c7"], ids["c8"]])
        # A single artist: the default rules would leave one track, so the rest come without them.
        assert _ids(cat.radio([ids["S"]], k=2, filters=SearchOptions.parse(["artist=A"]).filters)) == [
            ids["c1"],
            ids["c3"],
        ]
        # Rules the caller sets are kept.
        assert _ids(cat.radio([ids["S"]], k=2, per_artist=1, filters=SearchOptions.parse(["artist=A"]).filters)) == [
            ids["c1"]
        ]
        with pytest.raises(InvalidArgumentError, match="at least one track"):
            cat.radio([])


def test_a_radios_queries_do_not_grow_with_its_history(catalog):
    """The history's and the exclusions' ids are checked in one query each, not one at a time:
    a history that holds the same tracks 40 times over costs the database the same statements."""
    from sqlalchemy import event

    directory, ids = catalog
    with Catalog.open(directory) as cat:
        statements = []
        event.listen(cat.store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

        def counted(history: list[int]) -> int:
            statements.clear()
            assert sorted(_ids(cat.radio(history, k=2))) == sorted([ids["c7"], ids["c8"]])
            return len(statements)

        history = [ids[name] for name in ("S", "c1", "c2", "c4", "c5")]
        short = counted(history)  # the first also loads the indexes
        assert counted(history * 40) == counted(history) <= short
        with pytest.raises(TrackNotFoundError, match="no track with id 999"):
            cat.radio([*history, 999])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"no_repeat_artist": -1}, "no_repeat_artist"),
        ({"no_repeat_album": 1.5}, "no_repeat_album"),
        ({"shuffle": -0.1}, "shuffle"),
        ({"shuffle": float("nan")}, "shuffle"),
        ({"seed": -3}, "seed"),
        ({"combine": "median"}, "combine"),
        ({"exclude": 5}, "exclude"),
    ],
)
def test_queue_options_are_checked(fields, message):
    with pytest.raises(InvalidArgumentError, match=message):
        SearchOptions(**fields)


def test_a_clip_search_refuses_the_queue_options(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat, pytest.raises(InvalidArgumentError, match="similar tracks"):
        cat.search_embedding(None, exclude=[ids["S"]])


def _cli(*args, code: int = 0):
    return cli(*args, code=code)


def test_cli_similar_with_a_queue_and_radio(catalog):
    directory, ids = catalog
    similar = _cli(
        "similar", ids["S"], "-c", directory, "-k", 3, "--exclude", "/music/c5.flac", "--exclude", ids["c1"],
        "--exclude", ids["c2"], "--no-repeat-artist", 2, "--json",
    )  # fmt: skip
    assert [r["track_id"] for r in json.loads(similar.stdout)["results"]] == [ids["c4"], ids["c7"], ids["c8"]]
    shuffled_once = _cli("similar", ids["S"], "-c", directory, "--shuffle", 0.5, "--seed", 3, "--json").stdout
    assert shuffled_once == _cli("similar", ids["S"], "-c", directory, "--shuffle", 0.5, "--seed", 3, "--json").stdout
    radio = _cli("radio", ids["S"], "-c", directory, "-k", 4, "--json")
    assert [r["track_id"] for r in json.loads(radio.stdout)["results"]] == [ids["c1"], ids["c2"], ids["c4"], ids["c5"]]
    average = _cli("similar", ids["a0"], ids["b0"], "-c", directory, "-k", 3, "--combine", "average", "--json")
    assert {r["track_id"] for r in json.loads(average.stdout)["results"]} == {ids[f"m{n}"] for n in range(3)}
    assert "combine must be one of" in _cli("similar", ids["S"], "-c", directory, "--combine", "x", code=1).stderr
    assert "no track with id 9999" in _cli("radio", ids["S"], 9999, "-c", directory, code=1).stderr


def test_http_radio_similar_queue_and_client(catalog):
    directory, ids = catalog
    with running(Settings(catalog=directory)) as url, Client(url) as client:
        assert [r["track_id"] for r in client.radio([ids["S"]], k=4)] == [ids["c1"], ids["c2"], ids["c4"], ids["c5"]]
        queue = client.similar(ids["S"], k=3, exclude=[ids["c5"], ids["c1"], ids["c2"]], no_repeat_artist=2)
        assert [r["track_id"] for r in queue] == [ids["c4"], ids["c7"], ids["c8"]]
        drawn = client.similar(ids["S"], k=3, shuffle=0.5, seed=4)
        assert drawn == client.similar(ids["S"], k=3, shuffle=0.5, seed=4)
        with pytest.raises(ApiError) as missing:
            client.radio([ids["S"], 9999])
        assert missing.value.status == 404
        import httpx

        for query in ("", "?history=0", "?history=1&k=0", "?history=1&shuffle=-1", "?history=1&combine=x"):
            assert httpx.get(f"{url}/radio{query}").status_code == 422, query
        assert httpx.get(f"{url}/tracks/1/similar?exclude={2**70}").status_code == 422
