"""verify finds disagreement between database, indexes, manifest and vectors; repair fixes it."""

import json

import numpy as np
import pytest
from sqlalchemy import event, text
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.catalog import maintenance
from mertsearch.cli import app
from mertsearch.indexer.duplicates import META_KEY
from mertsearch.storage.vector_index import FLAT, VectorIndex, saved_index_file


@pytest.fixture
def catalog(tmp_path, tiny_model, music, database):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music])
    return tmp_path / "cat"


@pytest.mark.parametrize("factory", ["auto", "IVF2,SQ8"])
def test_a_healthy_catalog_verifies(catalog, factory):
    with Catalog.open(catalog) as cat:
        cat.rebuild_index(factory)
        assert cat.verify() == []


def test_missing_index_stale_vectors_and_broken_rows_are_found_and_repaired(catalog):
    with Catalog.open(catalog) as cat:
        version = cat.store.data_version()
        # A windows index whose vectors are not the stored ones (as if written before a change).
        windows = cat.indexes.windows
        ids = np.concatenate([ids for ids, _ in cat.store.window_vectors()])
        stale = VectorIndex(windows.dim)
        stale.add(ids, np.tile(np.eye(windows.dim, dtype=np.float32)[0], (len(ids), 1)))
        stale.save(catalog / "index", version, "windows")
        saved_index_file(catalog / "index", "tracks").unlink()
        with cat.store.engine.begin() as connection:
            # As an outside tool might leave it: foreign keys not enforced.
            if cat.store.dialect == "sqlite":
                connection.execute(text("PRAGMA foreign_keys=OFF"))
                zeros = "zeroblob(128)"
            else:
                connection.execute(text("ALTER TABLE windows DROP CONSTRAINT windows_track_id_fkey"))
                zeros = "decode(repeat('00', 128), 'hex')"
            connection.execute(
                text(f'INSERT INTO windows (track_id, position, start, "end", vector) VALUES (999, 0, 0, 5, {zeros})')
            )
            connection.execute(text("UPDATE tracks SET duplicate_of = 2 WHERE id = 1"))
            connection.execute(text("UPDATE tracks SET duplicate_of = 3 WHERE id = 2"))
    with Catalog.open(catalog) as cat:
        problems = cat.verify()
    joined = "\n".join(problems)
    assert "the tracks index is missing" in joined
    assert "windows belong to no track" in joined
    assert "led by a track that is itself a duplicate" in joined
    assert "sampled windows vectors in the index differ from the stored ones" in joined
    assert "windows are in the database but not in the windows index" in joined

    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--catalog", str(catalog), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False
    result = runner.invoke(app, ["repair", "--catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["problems"] == [] and any("rebuilt both indexes" in line for line in report["done"])
    assert runner.invoke(app, ["verify", "--catalog", str(catalog)]).exit_code == 0


def _index_files(catalog) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in sorted((catalog / "index").iterdir())}


def test_verify_reads_vectors_by_id_only(catalog, monkeypatch):
    """No random sort or length over a whole vector column: the sampled rows are read by id."""
    monkeypatch.setattr("mertsearch.storage.verify.SAMPLE", 5)
    with Catalog.open(catalog) as cat:
        statements = []

        def seen(_connection, _cursor, statement, *_args):
            statements.append(" ".join(statement.split()).lower())

        event.listen(cat.store.engine, "before_cursor_execute", seen)
        assert cat.verify() == []
    read = [s for s in statements if "windows.vector" in s]
    assert read and all("windows.id in (" in s for s in read)
    assert not any("random()" in s for s in statements)


def test_vectors_of_another_size_are_found_without_failing_the_checks(catalog):
    with Catalog.open(catalog) as cat:
        with cat.store.engine.begin() as connection:
            blob = "zeroblob(8)" if cat.store.dialect == "sqlite" else "decode('0000000000000000', 'hex')"
            connection.execute(text(f"UPDATE windows SET vector = {blob} WHERE id = (SELECT min(id) FROM windows)"))
            connection.execute(text(f"UPDATE tracks SET vector = {blob} WHERE id = 1"))
        problems = cat.verify()
    assert "1 stored tracks vectors are not 32 floats" in problems
    assert any(
        p.startswith("1 of ") and p.endswith("sampled stored windows vectors are not 32 floats") for p in problems
    )


def test_repair_of_a_healthy_catalog_does_nothing_and_full_rebuilds(catalog, monkeypatch):
    relinked = []
    relink_all = maintenance.relink_all
    monkeypatch.setattr(maintenance, "relink_all", lambda cat: relinked.append(1) or relink_all(cat))
    before = _index_files(catalog)
    runner = CliRunner()
    with Catalog.open(catalog) as cat:
        version = cat.store.data_version()
    result = runner.invoke(app, ["repair", "--catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"done": [], "problems": []}
    plain = runner.invoke(app, ["repair", "--catalog", str(catalog)])
    assert plain.exit_code == 0 and "nothing to repair" in plain.stdout
    assert _index_files(catalog) == before and relinked == []
    with Catalog.open(catalog) as cat:
        assert cat.store.data_version() == version  # readers have nothing to load again

    full = runner.invoke(app, ["repair", "--full", "--catalog", str(catalog), "--json"])
    assert full.exit_code == 0, full.output
    assert json.loads(full.stdout)["done"] == ["rebuilt both indexes from the stored vectors"]
    assert set(_index_files(catalog)).isdisjoint(before)  # saved again, at a new data version
    assert relinked == [1]  # every link decided again (none changed)


@pytest.mark.parametrize("factory", [FLAT, "IVF2,SQ8"])
def test_repair_rebuilds_only_the_index_that_is_wrong(catalog, factory):
    with Catalog.open(catalog) as cat:
        ids = np.concatenate([ids for ids, _ in cat.store.window_vectors()])
        stale = VectorIndex(cat.indexes.windows.dim, factory)
        other = np.random.default_rng(0).normal(size=(len(ids), stale.dim)).astype(np.float32)
        other /= np.linalg.norm(other, axis=1, keepdims=True)  # vectors, but not the stored ones
        if stale.needs_training:
            stale.train(other)
        stale.add(ids, other)
        stale.save(catalog / "index", cat.store.data_version(), "windows")
    tracks = {name: mtime for name, mtime in _index_files(catalog).items() if name.startswith("tracks")}
    with Catalog.open(catalog) as cat:
        done = cat.repair()
        assert len(done) == 1 and done[0].startswith("rebuilt the windows index from the stored vectors (")
        assert "sampled windows vectors in the index differ" in done[0]
        assert cat.verify() == [] and cat.repair() == []
    assert {name: m for name, m in _index_files(catalog).items() if name.startswith("tracks")} == tracks


def test_repair_relinks_when_the_duplicate_rule_no_longer_fits(catalog):
    with Catalog.open(catalog) as cat:
        with cat.store.engine.begin() as connection:
            connection.execute(text("DELETE FROM meta WHERE key = :key"), {"key": META_KEY})
        done = cat.repair()
        assert any(line.startswith("fitted the duplicate rule") for line in done)
        assert not any("rebuilt" in line for line in done) and cat.repair() == []
