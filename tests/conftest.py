from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.fixtures import tone_track, write_audio, write_tiny_mert

SAMPLE_RATE = 44100


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


# A PostgreSQL URL whose role may create databases (make test starts a local server and sets it).
POSTGRES_ENV = "MERTSEARCH_TEST_POSTGRES"


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch):
    """A developer's MERTSEARCH_DATABASE must not move the tests' catalogs into their database."""
    monkeypatch.delenv("MERTSEARCH_DATABASE", raising=False)


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
