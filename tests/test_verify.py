"""verify finds disagreement between database, indexes, manifest and vectors; repair fixes it."""

import json

import numpy as np
import pytest
from sqlalchemy import event, text
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.cli import app
from mertsearch.storage.vector_index import VectorIndex, saved_index_file


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
