"""Tags in every script mean the same on every backend: filters, look-ups, per-artist caps and the
seeds' artists compare folded text (accents in NFC or NFD, capitals of any script, ß and SS, Turkish
I), identically on SQLite, PostgreSQL and Milvus, through the library, the CLI and HTTP."""

from __future__ import annotations

import json
import os
import unicodedata

import httpx
import mutagen
import numpy as np
import pytest
import sqlalchemy
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.cli import app
from mertsearch.storage.filters import Filters
from mertsearch.text import fold
from tests.helpers import SAMPLE_RATE, melody_track, write_audio
from tests.servers import running


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# (file, artist, album, title), the tags as taggers write them.
TAGGED = [
    ("piaf-nfc.flac", nfc("Édith Piaf"), "La Vie en rose", "Hymne à l'amour"),
    ("piaf-nfd.flac", nfd("Édith Piaf"), nfd("Récital"), "Non, je ne regrette rien"),
    ("kino.flac", "Кино", "Группа крови", "Кукушка"),
    ("malamas.flac", "Σωκράτης Μάλαμας", "Ένα", "Πριγκηπέσσα"),
    ("strasse.flac", "Straßenkinder", "STRASSE", "Weiß"),
    ("sakamoto.flac", "坂本龍一", "音楽図鑑", "Ｔｏｎｇ Ｐｏｏ"),
    ("manco.flac", "Barış Manço", "İstanbul", "Işık"),
    ("plain.flac", "Ann", "First", "Song"),
]
PIAF = {"piaf-nfc.flac", "piaf-nfd.flac"}

# A filter as a user types it, and the files it must select (the seed, plain.flac, is never a result).
FILTERS = {
    "artist=Édith Piaf": PIAF,
    "artist=édith piaf": PIAF,
    nfd("artist=ÉDITH PIAF"): PIAF,
    "artist=Edith Piaf": set(),  # accents are kept: another name
    "artist=Кино": {"kino.flac"},
    "artist=КИНО": {"kino.flac"},
    "artist=кино": {"kino.flac"},
    "artist=ΣΩΚΡΆΤΗΣ ΜΆΛΑΜΑΣ": {"malamas.flac"},
    "artist=STRASSENKINDER": {"strasse.flac"},
    "album=straße": {"strasse.flac"},
    "artist=坂本龍一": {"sakamoto.flac"},
    "album=istanbul": {"manco.flac"},
    "album=ISTANBUL": {"manco.flac"},
    "album=İSTANBUL": {"manco.flac"},
    "artist=BARIŞ MANÇO": {"manco.flac"},
    "artist=barış manço": {"manco.flac"},
    "album=récital": {"piaf-nfd.flac"},
}
# Text looked up in titles, artists, albums and paths, and the files it must find.
LOOKUPS = {
    "кино": {"kino.flac"},
    "ÉDITH": PIAF,
    nfd("édith p"): PIAF,
    "weiss": {"strasse.flac"},
    "龍一": {"sakamoto.flac"},
    "tong poo": {"sakamoto.flac"},
    "ışık": {"manco.flac"},
    "IŞIK": {"manco.flac"},
    "PIAF-NF": PIAF,
    "σωκράτης": {"malamas.flac"},
}


def test_fold_compares_as_people_read():
    assert fold(nfc("Édith")) == fold(nfd("ÉDITH")) == "édith"
    assert fold("Straße") == fold("STRASSE") == "strasse"
    assert fold("İstanbul") == fold("ISTANBUL") == fold("ıstanbul") == "istanbul"
    assert fold("ΣΩΚΡΆΤΗΣ") == fold("Σωκράτης")
    assert fold("Ｔｏｎｇ") == "tong"
    assert fold("が") != fold("か")  # marks other scripts need stay
    assert fold("Edith") != fold("Édith")
    assert fold(None) == fold("") == ""


def write_scripts(folder) -> None:
    for n, (name, artist, album, title) in enumerate(TAGGED):
        path = write_audio(folder / name, melody_track(300 + n, 10, SAMPLE_RATE), SAMPLE_RATE)
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["album"], tagged["title"] = artist, album, title
        tagged.save()


def _names(results) -> set[str]:
    return {os.path.basename(r.path) for r in results}


def answers(cat: Catalog, music) -> dict:
    """What the catalog answers to every filter, look-up and cap above."""
    seed = music / "plain.flac"
    out = {}
    for expression in FILTERS:
        out["filter", expression] = _names(cat.similar(seed, k=8, filters=Filters.parse([expression])))
    for text in LOOKUPS:
        out["find", text] = {os.path.basename(t["path"]) for t in cat.find_tracks(text)["tracks"]}
    out["per artist"] = _names(cat.similar(seed, k=8, per_artist=1)) & PIAF
    out["seed artist"] = _names(cat.similar(music / "piaf-nfc.flac", k=8, exclude_seed_artist=True)) & PIAF
    return out


def expected() -> dict:
    out = {("filter", e): files for e, files in FILTERS.items()}
    out |= {("find", t): files for t, files in LOOKUPS.items()}
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "milvus"])
def test_tags_in_every_script_compare_alike_on_every_backend(tmp_path, backend, request):
    options = {}
    if backend == "postgresql":
        options["database"] = request.getfixturevalue("postgres_url")
    elif backend == "milvus":
        pytest.importorskip("milvus_lite")
        options["vector_store"] = f"milvus://{tmp_path / 'milvus.db'}"
    write_scripts(tmp_path / "music")
    with Catalog.create(tmp_path / "cat", model="spectral", **options) as cat:
        assert cat.index_paths([tmp_path / "music"]).added == len(TAGGED)
        found = answers(cat, tmp_path / "music")
    for key, files in expected().items():
        assert found[key] == files, key
    assert len(found["per artist"]) == 1  # the two spellings of one artist count as one
    assert found["seed artist"] == set()


@pytest.fixture
def script_catalog(tmp_path):
    write_scripts(tmp_path / "music")
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        cat.index_paths([tmp_path / "music"])
    return tmp_path / "cat", tmp_path / "music"


def test_the_command_line_and_http_filter_and_find_folded(script_catalog):
    directory, music = script_catalog
    result = CliRunner().invoke(
        app,
        ["similar", str(music / "plain.flac"), "-c", str(directory), "--filter", "artist=édith piaf", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert {os.path.basename(r["path"]) for r in json.loads(result.output)["results"]} == PIAF
    with running(Settings(catalog=directory)) as url:
        found = httpx.get(f"{url}/tracks", params={"q": "кино"}).json()
        assert [os.path.basename(t["path"]) for t in found["tracks"]] == ["kino.flac"]
        seed = found["tracks"][0]["track_id"]
        similar = httpx.get(f"{url}/tracks/{seed}/similar", params={"filter": "artist=ÉDITH PIAF", "k": 8})
        assert similar.status_code == 200, similar.text
        assert {os.path.basename(r["path"]) for r in similar.json()["results"]} == PIAF


def as_before_folding(connection) -> None:
    """The tables as an older version left them: no folded copies, nor the text index over them."""
    if connection.dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            connection.execute(sqlalchemy.text(f"DROP TRIGGER IF EXISTS track_text_{trigger}"))
        connection.execute(sqlalchemy.text("DROP TABLE IF EXISTS track_text"))
    for column in ("artist_key", "album_key", "genre_key", "search_text", "audio_sha256"):
        connection.execute(sqlalchemy.text(f"DROP INDEX IF EXISTS ix_tracks_{column}"))
        connection.execute(sqlalchemy.text(f"ALTER TABLE tracks DROP COLUMN {column}"))
    connection.execute(sqlalchemy.text("DELETE FROM meta WHERE key = 'text_fold'"))


def test_a_catalog_made_before_folding_is_folded_when_opened(script_catalog):
    directory, music = script_catalog
    engine = sqlalchemy.create_engine(f"sqlite:///{directory / 'catalog.db'}")
    with engine.begin() as connection:
        as_before_folding(connection)
    engine.dispose()
    with Catalog.open(directory) as cat:
        found = answers(cat, music)
    for key, files in expected().items():
        assert found[key] == files, key


def test_an_older_database_gets_the_folded_columns_on_sqlite_and_postgresql(tmp_path, database):
    from mertsearch.storage.store import MetadataStore
    from tests.helpers import synthetic_track

    url = database or f"sqlite:///{tmp_path / 'catalog.db'}"
    store = MetadataStore(url)
    window = np.ones((1, 4), np.float32) / 2
    for n, (name, artist, album, title) in enumerate(TAGGED):
        tags = {"artist": artist, "album": album, "title": title}
        store.put_track(synthetic_track(n, window, path=f"/music/{name}", tags=tags))
    with store.engine.begin() as connection:
        as_before_folding(connection)
    store.close()
    store = MetadataStore(url)
    try:
        for expression, files in FILTERS.items():
            ids = store.track_ids_where(Filters.parse([expression]).condition())
            assert {os.path.basename(t.path) for t in store.tracks_by_id(ids).values()} == files, expression
        for text, files in LOOKUPS.items():
            _, rows = store.find_tracks(text, limit=50, offset=0)
            assert {os.path.basename(t.path) for t in rows} == files, text
    finally:
        store.close()
