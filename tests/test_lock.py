"""One writer at a time; searches keep working while a writer holds the catalog."""

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mertsearch import Catalog, CatalogBusyError
from mertsearch.cli import app

HOLD = """
import sys, time
from mertsearch import Catalog
cat = Catalog.open(sys.argv[1])
with cat._lock.held():
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(catalog, seconds):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(catalog), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_writer_fails_clearly_or_waits(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music / "a.wav"])
    holder = _hold(tmp_path / "cat", 3)
    try:
        with Catalog.open(tmp_path / "cat") as cat:
            with pytest.raises(CatalogBusyError, match=r"another process \(pid \d+\) is writing"):
                cat.index_paths([music])
            assert cat.similar(1, k=1) == []  # reading works meanwhile (one track, nothing else)
            result = CliRunner().invoke(app, ["remove", "1", "--catalog", str(tmp_path / "cat")])
            assert result.exit_code == 1 and "is writing to the catalog" in result.stderr
            started = time.monotonic()
            cat.wait_s = 30
            assert cat.index_paths([music]).added == 5  # waited for the holder to finish
            assert time.monotonic() - started > 0.5
    finally:
        holder.wait(timeout=30)


def test_a_killed_writer_leaves_no_lock_behind(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2) as cat:
        cat.index_paths([music / "a.wav"])
    holder = _hold(tmp_path / "cat", 60)
    holder.kill()
    holder.wait()
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.index_paths([music]).added == 5
