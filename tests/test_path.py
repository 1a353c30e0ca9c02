"""Song paths on a catalog whose tracks lie on a known arc: the right path is known by geometry, in
the library, the command line, HTTP and the client."""

import dataclasses
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.cli import app
from mertsearch.client import ApiError, Client
from mertsearch.errors import InvalidArgumentError, TrackNotFoundError
from mertsearch.search import SearchOptions
from tests.helpers import cli, screen, synthetic_track
from tests.servers import running

DIM = 32  # the tiny model's
STEP = 9  # degrees between arc tracks


def _arc(angle_degrees: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[6], vector[7] = math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))
    return vector


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, tiny_model):
    """(directory, ids by name): p0..p10 on a quarter circle, 9 degrees apart (p0 and p3 by the
    artist P, the others each by their own), p3b another file of p3 (half a degree before it),
    and six tracks off the arc, orthogonal to it."""
    directory = tmp_path_factory.mktemp("path") / "cat"
    ids: dict[str, int] = {}
    with Catalog.create(directory, model=str(tiny_model), layer=3) as cat:

        def put(name: str, vector, folder: str, artist: str, duplicate_of: str | None = None) -> None:
            windows = np.stack([vector] * 2).astype(np.float32)
            record = synthetic_track(len(ids), windows, path=f"/{folder}/{name}.flac", tags={"artist": artist})
            if duplicate_of is not None:
                record = dataclasses.replace(record, duplicate_of=ids[duplicate_of])
            ids[name] = cat.store.put_track(record).track_id

        for n in range(11):
            put(f"p{n}", _arc(STEP * n), "arc", "P" if n in (0, 3) else f"artist {n}")
            if n == 3:
                put("p3b", _arc(STEP * n - 0.5), "arc", "P", duplicate_of="p3")
        for n in range(6):
            off = np.zeros(DIM, dtype=np.float32)
            off[10 + n] = 1.0
            put(f"o{n}", off, "off", f"other {n}")
        cat.rebuild_index()
    return directory, ids


def _names(results, ids) -> list[str]:
    names = {track_id: name for name, track_id in ids.items()}
    return [names[r.track_id] for r in results]


def test_a_path_takes_the_arc_tracks_nearest_evenly_spaced_points(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        # Points at 18, 36, 54, 72 degrees: arc tracks stand exactly there.
        path = cat.path(ids["p0"], ids["p10"], 6)
        assert _names(path, ids) == ["p0", "p2", "p4", "p6", "p8", "p10"]
        # Each step turns 18 degrees; the start scores 1 (itself).
        assert [round(r.score, 4) for r in path] == [1.0] + [round(math.cos(math.radians(18)), 4)] * 5
        # Points at 30 and 60 degrees: p3 (27) and p7 (63) are nearest.
        assert _names(cat.path(ids["p0"], ids["p10"], 4), ids) == ["p0", "p3", "p7", "p10"]
        assert _names(cat.path(ids["p0"], ids["p10"], 2), ids) == ["p0", "p10"]
        # Backwards, by path.
        assert _names(cat.path("/arc/p10.flac", "/arc/p0.flac", 4), ids) == ["p10", "p7", "p3", "p0"]


def test_a_path_of_every_arc_track_is_distinct_and_moves_steadily_to_its_end(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        path = cat.path(ids["p0"], ids["p10"], 11)
    names = _names(path, ids)
    # Exactly 11 tracks, one file of each recording (p3 or p3b, never both), in arc order.
    assert len(names) == 11 and len(set(names)) == 11
    assert [name.rstrip("b") for name in names] == [f"p{n}" for n in range(11)]
    end = _arc(90)
    to_end = [float(_arc(STEP * int(name[1:].rstrip("b"))) @ end) for name in names]
    assert all(b >= a for a, b in zip(to_end, to_end[1:], strict=False))


def test_a_path_leaves_out_exclusions_recent_artists_and_keeps_its_filters(catalog):
    directory, ids = catalog
    with Catalog.open(directory) as cat:
        # Excluding p3's other file drops p3: the point at 30 degrees takes p4 (36).
        assert _names(cat.path(ids["p0"], ids["p10"], 4, exclude=[ids["p3b"]]), ids) == ["p0", "p4", "p7", "p10"]
        # p3 shares p0's artist: with no artist twice in a row, p4 again.
        assert _names(cat.path(ids["p0"], ids["p10"], 4, no_repeat_artist=1), ids) == ["p0", "p4", "p7", "p10"]
        # Outside the arc folder: the off-arc tracks, the only ones left.
        off = SearchOptions.parse(["path=/off/"]).filters
        middle = _names(cat.path(ids["p0"], ids["p10"], 4, filters=off), ids)[1:-1]
        assert len(middle) == 2 and all(name.startswith("o") for name in middle)


def test_path_errors_are_clear(catalog):
    directory, ids = catalog
    arc = SearchOptions.parse(["path=/arc/"]).filters
    with Catalog.open(directory) as cat:
        with pytest.raises(InvalidArgumentError, match="count must be between 2"):
            cat.path(ids["p0"], ids["p10"], 1)
        with pytest.raises(TrackNotFoundError, match="9999"):
            cat.path(ids["p0"], 9999, 4)
        with pytest.raises(InvalidArgumentError, match="same recording"):
            cat.path(ids["p3"], ids["p3b"], 4)
        # Nine arc recordings lie between the ends: a tenth cannot be found.
        assert len(cat.path(ids["p0"], ids["p10"], 11, filters=arc)) == 11
        with pytest.raises(InvalidArgumentError, match="only 9 are left"):
            cat.path(ids["p0"], ids["p10"], 12, filters=arc)
        with pytest.raises(InvalidArgumentError, match="does not take shuffle"):
            cat.path(ids["p0"], ids["p10"], 4, shuffle=0.5)


def test_cli_path(catalog, tmp_path):
    directory, ids = catalog
    runner = CliRunner()
    args = ["path", str(ids["p0"]), "/arc/p10.flac", "-c", str(directory), "--count", "4"]
    result = runner.invoke(app, [*args, "--json", "--m3u", str(tmp_path / "path.m3u")])
    assert result.exit_code == 0, result.output
    assert [r["track_id"] for r in json.loads(result.stdout)["results"]] == [ids[n] for n in ("p0", "p3", "p7", "p10")]
    assert (tmp_path / "path.m3u").read_text().count(".flac") == 4
    # Piped, a line per step, the other files of its recording after its path.
    lines = [line.split("\t") for line in cli(*args).stdout.splitlines()]
    assert [line[3] for line in lines] == ["/arc/p0.flac", "/arc/p3.flac", "/arc/p7.flac", "/arc/p10.flac"]
    assert lines[1][4:] == ["/arc/p3b.flac"] and lines[0][1] == "-"  # the start has no step before it
    # At a terminal: each step's similarity is with the step before; a path matches no part of a query.
    table = "\n".join(screen(*args))
    assert "to previous" in table and "match" not in table and "in query" not in table and "clip at" not in table
    assert "= p3b.flac" in table
    failed = runner.invoke(app, [*args[:-1], "1"])
    assert failed.exit_code != 0


def test_http_path_and_client(catalog):
    directory, ids = catalog
    with running(Settings(catalog=directory)) as url, Client(url) as client:
        path = client.path(ids["p0"], ids["p10"], count=6)
        assert [r["track_id"] for r in path] == [ids[f"p{n}"] for n in (0, 2, 4, 6, 8, 10)]
        assert [r["track_id"] for r in client.path(ids["p0"], ids["p10"], count=4, no_repeat_artist=1)] == [
            ids[f"p{n}"] for n in (0, 4, 7, 10)
        ]
        assert len(client.path(ids["p0"], ids["p10"], count=12)) == 12  # two steps off the arc
        with pytest.raises(ApiError) as too_short:
            client.path(ids["p0"], ids["p10"], count=1)
        assert too_short.value.status == 422
        with pytest.raises(ApiError) as too_many:
            client.path(ids["p0"], ids["p10"], count=12, filter=["path=/arc/"])
        assert too_many.value.status == 422 and "only 9" in too_many.value.message
        with pytest.raises(ApiError) as missing:
            client.path(ids["p0"], 9999)
        assert missing.value.status == 404
