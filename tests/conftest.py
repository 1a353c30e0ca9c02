from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import mutagen
import pytest

from mertsearch import Catalog
from mertsearch.cache import CACHE_ENV
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, tone_track, write_audio, write_tiny_mert


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random MERT checkpoint in the hub layout (4 layers x 32 dims)."""
    directory, _ = write_tiny_mert(tmp_path_factory.mktemp("models") / "tiny-mert")
    return directory


@pytest.fixture(scope="session")
def music_source(tmp_path_factory) -> Path:
    """Six distinct generated tracks of 9-24 s in several formats, with tags on some."""
    folder = tmp_path_factory.mktemp("music-source")
    names = ["a.wav", "b.flac", "c.mp3", "d.ogg", "sub/e.wav", "sub/f.flac"]
    for seed, name in enumerate(names):
        write_audio(folder / name, tone_track(seed, 9 + 3 * seed, SAMPLE_RATE), SAMPLE_RATE)
    return folder


@pytest.fixture
def music(tmp_path, music_source) -> Path:
    """A fresh copy of the generated tracks, free to change."""
    folder = tmp_path / "music"
    shutil.copytree(music_source, folder)
    return folder


# (artist, album, year, seconds) of twelve generated tracks.
TAGS = [
    ("Ann", "First", 1990, 12),
    ("Ann", "First", 1990, 13),
    ("Ann", "Second", 1995, 14),
    ("Ann", "Second", 1995, 15),
    ("Bob", "Blue", 2001, 16),
    ("Bob", "Blue", 2001, 17),
    ("Bob", "Red", 2003, 18),
    ("Cat", "Only", 2010, 19),
    ("Cat", "Only", 2010, 20),
    ("Cat", "Only", 2010, 21),
    ("Dan", "Solo", 2020, 22),
    ("Dan", "Solo", 2020, 23),
]


def write_tagged_music(folder: Path) -> None:
    """The twelve tunes of TAGS, tagged, in a folder per artist (``NN.flac``, NN their index)."""
    for n, (artist, album, year, seconds) in enumerate(TAGS):
        path = write_audio(folder / artist / f"{n:02d}.flac", melody_track(100 + n, seconds, SAMPLE_RATE), SAMPLE_RATE)
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["album"], tagged["date"], tagged["title"] = artist, album, str(year), f"Song {n}"
        tagged.save()


@pytest.fixture(scope="module")
def tagged_catalog(tmp_path_factory):
    """Twelve generated tunes tagged with TAGS (folders by artist), a discerning tiny model, hop 2.5 s,
    centered: (catalog, music folder), shared by a module's tests, which must not change it."""
    root = tmp_path_factory.mktemp("tagged")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    write_tagged_music(root / "music")
    with Catalog.create(root / "cat", model=str(model), layer=2, hop=2.5) as cat:
        assert cat.index_paths([root / "music"]).added == 12
        cat.reindex(transform="center")
        yield cat, root / "music"


# A PostgreSQL URL whose role may create databases (make test starts a local server and sets it).
POSTGRES_ENV = "MERTSEARCH_TEST_POSTGRES"


# The model precision of every catalog and encoder a test does not pin itself: fp32 (what a CPU
# without bf16 units chooses), or bf16 with MERTSEARCH_TEST_PRECISION=bf16 (what "auto" chooses on
# one with them; autocast runs it, slowly, on any CPU). make test runs the suite both ways.
TEST_PRECISION_ENV = "MERTSEARCH_TEST_PRECISION"


def pytest_report_header(config) -> str:
    return f"mertsearch: model precision {os.environ.get(TEST_PRECISION_ENV) or 'fp32'} ({TEST_PRECISION_ENV})"


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    """For the whole run, module-wide catalogs and child processes included: this run's precision in
    MERTSEARCH_PRECISION, no MERTSEARCH_DATABASE of the developer's (it would move the tests'
    catalogs into their database; the ``database`` fixture sets it per test), and a cache of the
    run's own instead of the user's (``_own_cache`` gives each test another)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MERTSEARCH_PRECISION", os.environ.get(TEST_PRECISION_ENV) or "fp32")
        patch.delenv("MERTSEARCH_DATABASE", raising=False)
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch):
    """A cache folder per test (made when first written), so no test is served another's weights
    hash or precision decision."""
    monkeypatch.setenv(CACHE_ENV, os.path.join(os.environ[CACHE_ENV], uuid.uuid4().hex))


@pytest.fixture
def postgres_url() -> str:
    """A new, empty PostgreSQL database for one test (URL with the password), dropped after it."""
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} is not set (make test starts a local PostgreSQL and sets it)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mertsearch_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch) -> str | None:
    """Run a test on SQLite and on PostgreSQL: new catalogs take their database from
    MERTSEARCH_DATABASE, as a user's would. The PostgreSQL URL, or None for SQLite."""
    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("MERTSEARCH_DATABASE", url)
    return url
