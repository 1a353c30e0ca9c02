"""One SearchOptions for the Python API, the command line and the HTTP API: the same options give
the same results everywhere, and a bad option is refused before any audio is embedded."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mertsearch import Filters, InvalidArgumentError, SearchOptions
from mertsearch.api.app import Settings, create_app
from mertsearch.cli import app


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"k": 0}, "k must be between 1 and 10000"),
        ({"k": 10001}, "k must be between 1 and 10000"),
        ({"mode": "albums"}, "mode must be one of segments, tracks"),
        ({"per_artist": 0}, "per_artist must be at least 1"),
        ({"per_album": -1}, "per_album must be at least 1"),
    ],
)
def test_bad_options_are_refused_when_made(fields, message):
    with pytest.raises(InvalidArgumentError, match=message):
        SearchOptions(**fields)


def test_parse_reads_the_command_line_expressions():
    options = SearchOptions.parse(["genre=Jazz", "year=1960"], min_duration=60, k=5)
    assert options.filters == Filters(genre=("Jazz",), min_year=1960, max_year=1960, min_duration=60)
    assert options.k == 5 and SearchOptions.parse([]).filters is None


def test_options_and_keywords_are_one_search(tagged_catalog):
    cat, music = tagged_catalog
    clip = next(music.rglob("*.flac"))
    options = SearchOptions(k=4, per_artist=1, filters=Filters(min_year=1990))
    by_options = cat.search(clip, options, start=2, end=8)
    assert [r.track_id for r in by_options] == [
        r.track_id for r in cat.search(clip, start=2, end=8, k=4, per_artist=1, filters=Filters(min_year=1990))
    ]
    assert len(cat.search(clip, options, k=2)) == 2  # a keyword changes one field of the options
    with pytest.raises(InvalidArgumentError, match="exclude_seed_artist is for similar"):
        cat.search(clip, exclude_seed_artist=True)
    with pytest.raises(TypeError, match="per_genre"):
        cat.similar(1, per_genre=1)


def test_the_library_the_command_line_and_the_http_api_agree(tagged_catalog):
    cat, _ = tagged_catalog
    options = SearchOptions.parse(
        ["artist=Ann", "artist=bob"], max_year=2001, k=3, per_album=1, exclude_seed_artist=True
    )
    library = [r.as_dict() for r in cat.similar(2, options)]
    assert [r["artist"] for r in library] == ["Bob"]  # Ann is the seed's artist; one per album
    done = CliRunner().invoke(
        app,
        ["similar", "2", "--catalog", str(cat.directory), "--filter", "artist=Ann", "--filter", "artist=bob",
         "--max-year", "2001", "-k", "3", "--per-album", "1", "--exclude-seed-artist", "--json"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    with TestClient(create_app(Settings(catalog=cat.directory))) as client:
        answer = client.get(
            "/tracks/2/similar",
            params={
                "filter": ["artist=Ann", "artist=bob"],
                "max_year": 2001,
                "k": 3,
                "per_album": 1,
                "exclude_seed_artist": True,
            },
        )
    assert answer.status_code == 200, answer.text
    for other in (json.loads(done.stdout)["results"], answer.json()["results"]):
        assert [(r["track_id"], round(r["score"], 5)) for r in other] == [
            (r["track_id"], round(r["score"], 5)) for r in library
        ]
