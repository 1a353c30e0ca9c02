"""The metadata database as a URL: SQLite by default, PostgreSQL shared by concurrent writers."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from mertsearch import Catalog, CatalogMismatchError
from mertsearch.cli import app
from mertsearch.storage.schema import Track
from mertsearch.storage.store import MetadataStore, TrackRecord
from tests.helpers import assert_consistent

INVALID_UTF8 = os.fsdecode(b"/music/caf\xe9 \xff/track.flac")


def _record(path: str, *, size: int = 5 * 2**32, mtime_ns: int = 1_700_000_000_123_456_789, **tags) -> TrackRecord:
    vector = np.ones(4, np.float32) / 2
    return TrackRecord(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        sha256="0" * 64,
        duration=6.0,
        tags=tags,
        vector=vector,
        window_starts=np.array([0.0]),
        window_ends=np.array([5.0]),
        window_vectors=vector[None, :],
    )


@pytest.fixture
def store(tmp_path, database):
    store = MetadataStore(database or f"sqlite:///{tmp_path / 'catalog.db'}")
    yield store
    store.close()


def test_large_numbers_odd_names_and_tags_round_trip(store):
    stored = store.put_track(_record(INVALID_UTF8, title="nul\x00 in a tag", musicbrainz_track_id="x" * 50))
    store.put_track(_record("/music/plain/a.flac"))
    store.record_failure(os.fsdecode(b"/music/caf\xe9 \xff/bad.mp3"), size=2**40, mtime_ns=2**62, reason="bad")
    row = store.track_by_path(INVALID_UTF8)
    assert (row.id, row.path, row.size, row.mtime_ns) == (
        stored.track_id,
        INVALID_UTF8,
        5 * 2**32,
        1_700_000_000_123_456_789,
    )
    assert row.title.replace("\x00", "") == "nul in a tag"
    # Prefix queries match names that are not valid UTF-8 (SQLite keeps those as bytes, which LIKE
    # does not match: its behaviour of old, kept).
    if store.dialect != "sqlite":
        assert store.paths_under([os.fsdecode(b"/music/caf\xe9 \xff/")]) == [(stored.track_id, INVALID_UTF8)]
        assert sorted(p for _, p in store.paths_under(["/music/"])) == [
            "/music/caf\udce9 \udcff/track.flac",
            "/music/plain/a.flac",
        ]
    assert store.find_tracks("caf", limit=5, offset=0)[0] == 1
    (failure,) = store.failures()
    assert failure.size == 2**40 and failure.mtime_ns == 2**62 and failure.path.endswith("bad.mp3")
    assert store.data_version() == 2


def test_concurrent_writes_of_one_path_leave_one_track(store):
    barrier = threading.Barrier(4)
    errors = []

    def write(n):
        barrier.wait()
        try:
            for _ in range(5):
                store.put_track(_record("/music/same.flac", title=f"writer {n}"))
                store.record_failure("/music/failed.flac", size=1, mtime_ns=1, reason=f"writer {n}")
        except Exception as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.session() as session:
        assert session.scalar(select(func.count(Track.id))) == 1
    assert store.count("windows") == 1 and len(store.failures()) == 1
    assert store.data_version() == 20  # every change counted once, none lost


def test_the_manifest_records_the_url_without_its_password(tmp_path, tiny_model, music, postgres_url):
    assert make_url(postgres_url).password  # the tests' URL carries one
    runner = CliRunner()
    catalog = tmp_path / "cat"
    args = ["index", str(music / "a.wav"), "--catalog", str(catalog), "--model", str(tiny_model), "--layer", "2"]
    result = runner.invoke(app, [*args, "--database", postgres_url, "--json"])
    assert result.exit_code == 0, result.output
    manifest = (catalog / "manifest.json").read_text()
    password = make_url(postgres_url).password
    assert f":{password}@" not in manifest
    assert json.loads(manifest)["database"] == postgres_url.replace(f":{password}@", "@")
    assert not (catalog / "catalog.db").exists()
    # Later commands find the database in the manifest (the password comes from PGPASSWORD here).
    info = runner.invoke(app, ["info", "--catalog", str(catalog), "--json"], env={"PGPASSWORD": password})
    assert info.exit_code == 0, info.output
    document = json.loads(info.stdout)
    assert (
        document["tracks"] == 1 and f":{password}@" not in info.stdout and document["database"].startswith("postgresql")
    )
    # Another database for this catalog is an error; so is a second catalog in this database.
    result = runner.invoke(app, [*args, "--database", f"sqlite:///{tmp_path / 'other.db'}"])
    assert result.exit_code == 1 and "keeps its metadata in postgresql" in result.stderr
    assert f":{password}@" not in result.stderr
    with pytest.raises(CatalogMismatchError, match="keeps its metadata in"):
        Catalog.open(catalog, database=f"sqlite:///{tmp_path / 'other.db'}")
    second = ["index", str(music), "--catalog", str(tmp_path / "second"), "--model", str(tiny_model)]
    result = runner.invoke(app, [*second, "--database", postgres_url])
    assert result.exit_code == 1 and "already holds a catalog" in result.stderr


def test_a_sqlite_catalog_records_no_database_and_ignores_the_variable(tmp_path, tiny_model, music, monkeypatch):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music / "a.wav"])
    assert "database" not in json.loads((tmp_path / "cat" / "manifest.json").read_text())
    monkeypatch.setenv("MERTSEARCH_DATABASE", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Catalog.open(tmp_path / "cat") as cat:  # an existing catalog keeps its own database
        assert cat.store.count("tracks") == 1 and cat.info()["database"].endswith("cat/catalog.db")


WRITER = """
import sys
from mertsearch import Catalog
with Catalog.open(sys.argv[1]) as cat:
    report = cat.index_paths(sys.argv[2:], decoders=0)
print(report.added + report.updated)
"""


@pytest.mark.slow
def test_two_writers_index_into_one_postgresql_catalog_at_once(tmp_path, tiny_model, music, postgres_url):
    catalog = tmp_path / "cat"
    with Catalog.create(catalog, model=str(tiny_model), layer=2, database=postgres_url) as cat:
        cat.index_paths([music / "a.wav"])
    # Two processes at once: one folder each, and one file both are given.
    first = [str(music / "b.flac"), str(music / "c.mp3"), str(music / "a.wav")]
    second = [str(music / "sub"), str(music / "d.ogg"), str(music / "a.wav")]
    env = {**os.environ, "MERTSEARCH_DATABASE": postgres_url}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(catalog), *paths], env=env, stdout=subprocess.PIPE)
        for paths in (first, second)
    ]
    for writer in writers:
        assert writer.wait(timeout=300) == 0
    with Catalog.open(catalog, database=postgres_url) as cat:
        assert_consistent(cat, 6)
        assert cat.verify() == []
        with cat.store.engine.connect() as connection:
            assert connection.execute(text("SELECT count(DISTINCT path) FROM tracks")).scalar() == 6
        assert cat.similar(str(music / "sub" / "f.flac"), k=5)


def _chains(store) -> dict[int, int]:
    """{track: its leader} where the leader itself follows another track (never, by the rules)."""
    leaders = {i: leader for i, _, leader in store.track_links()}
    return {i: leader for i, leader in leaders.items() if leader is not None and leaders.get(leader) is not None}


def test_two_relinks_at_once_never_link_into_a_chain(postgres_url, monkeypatch):
    """Two writers' relinks at once on PostgreSQL, each deciding from the links as they were before
    either wrote: one puts x with y (the oldest: y leads the pair), the other y with z, which leads
    z and its copy w. Written as decided, x would follow y, which follows z."""
    from dataclasses import replace
    from types import SimpleNamespace

    import mertsearch.indexer.relink as relink_module

    stores = [MetadataStore(postgres_url) for _ in range(2)]
    try:
        y, x, z = (stores[0].put_track(_record(f"/music/{name}.flac")).track_id for name in "yxz")
        w = stores[0].put_track(replace(_record("/music/w.flac"), duplicate_of=z)).track_id
        near = {x: [y], y: [z]}
        barrier = threading.Barrier(2)

        def neighbours(index, store, transform, ids):
            barrier.wait(timeout=30)  # both have read the links; neither has written
            return {i: near[i] for i in ids}

        monkeypatch.setattr(relink_module, "neighbours", neighbours)
        monkeypatch.setattr(relink_module, "_windows", lambda store, ids, durations: {i: i for i in ids})
        rule = SimpleNamespace(links=lambda a, b: 0.0)  # the rule joins every pair it is asked about
        errors = []

        def run(store, track):
            try:
                relink_module.relink(store, None, None, rule, [track])
            except Exception as exc:  # pragma: no cover - shown by the assertion
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(store, track)) for store, track in zip(stores, (x, y), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _chains(stores[0]) == {}
        assert len({leader or i for i, _, leader in stores[0].track_links()}) == 1  # x, y, z and w: one recording
        assert {i for i, _, _ in stores[0].track_links()} == {x, y, z, w}
    finally:
        for store in stores:
            store.close()


def test_a_file_linked_to_a_track_that_now_follows_another_follows_that_one(store):
    """An ingest decides a file's leader before it writes; another writer's relink may have linked
    that leader to another track since."""
    from dataclasses import replace

    first, second = (store.put_track(_record(f"/music/{name}.flac")).track_id for name in ("first", "second"))
    with store.session() as session, session.begin():
        session.execute(update(Track).where(Track.id == second).values(duplicate_of=first))
    copy = store.put_track(replace(_record("/music/copy.flac"), duplicate_of=second)).track_id
    assert dict((i, leader) for i, _, leader in store.track_links())[copy] == first and _chains(store) == {}


def test_a_copy_into_sqlite_keeps_every_row(store, tmp_path):
    """eval's scratch copy of a catalog: any database into a SQLite file, row for row."""
    store.put_track(_record(INVALID_UTF8, title="odd"))
    store.put_track(_record("/music/plain/a.flac"))
    store.record_failure("/music/bad.mp3", size=3, mtime_ns=4, reason="bad")
    store.update_meta({"layers": "[7]"}, bump_version=True)
    copy = MetadataStore(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        store.copy_to(copy)
        assert copy.count("tracks") == 2 and copy.count("windows") == 2 and len(copy.failures()) == 1
        assert copy.track_by_path(INVALID_UTF8).title == "odd"
        assert copy.meta("layers") == "[7]" and copy.data_version() == store.data_version()
        np.testing.assert_array_equal(copy.all_track_vectors(4)[1], store.all_track_vectors(4)[1])
    finally:
        copy.close()


def test_a_copy_of_some_tracks_keeps_theirs_and_unlinks_the_others(store, tmp_path):
    """eval's scratch copy of a big catalog: those tracks, their windows, every meta key; a track
    whose leader is left out leads itself."""
    first = store.put_track(_record("/music/a.flac")).track_id
    second = store.put_track(_record("/music/b.flac")).track_id
    third = store.put_track(_record("/music/c.flac")).track_id
    store.relink_tracks(lambda links: {second: first})
    store.record_failure("/music/bad.mp3", size=3, mtime_ns=4, reason="bad")
    store.update_meta({"layers": "[7]"})
    copy = MetadataStore(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        store.copy_to(copy, track_ids=[second, third])
        assert copy.ids("tracks").tolist() == [second, third] and copy.count("windows") == 2
        assert copy.tracks_by_id([second])[second].duplicate_of is None and copy.failures() == []
        assert copy.meta("layers") == "[7]"
    finally:
        copy.close()


def test_the_layer_sweep_copies_a_sqlite_database_kept_outside_the_catalog(tmp_path, tiny_model, music):
    """eval's scratch copy reads the database the manifest names, not catalog.db in the folder."""
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'meta.db'}"
    (tmp_path / "elsewhere").mkdir()
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2, keep_layers=True, database=elsewhere) as cat:
        cat.index_paths([music], decoders=0)
        report = cat.evaluate(excerpts=2, seconds=4, seed=0, baseline=False)
    assert [row["layer"] for row in report["identification"]["layers"]] == [0, 1, 2, 3, 4]
    clean = [row["degradations"]["clean"] for row in report["identification"]["layers"]]
    assert all(row["recall_at_10"] == 1.0 for row in clean)  # the copy holds every track
    assert not (tmp_path / "cat" / "catalog.db").exists()
