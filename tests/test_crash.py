"""A real crash: the indexer process is killed with SIGKILL in the middle of a run."""

import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mertsearch import Catalog

from .test_catalog import _assert_consistent


def _tracks_in(database) -> int:
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            return connection.execute("select count(*) from tracks").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_completes_without_duplicates(tmp_path, tiny_model, music_source):
    music = tmp_path / "music"
    for copy in range(4):  # 24 files, so the kill lands in the middle of the run
        shutil.copytree(music_source, music / f"disc{copy}")
    catalog = tmp_path / "cat"
    command = [
        sys.executable,
        "-m",
        "mertsearch.cli",
        "index",
        str(music),
        "--catalog",
        str(catalog),
        "--model",
        str(tiny_model),
        "--layer",
        "3",
        "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _tracks_in(catalog / "catalog.db") < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = _tracks_in(catalog / "catalog.db")
    assert 3 <= stored < 24

    rerun = subprocess.run(command, capture_output=True, text=True, check=True)
    assert '"failed": []' in rerun.stdout
    with Catalog.open(catalog) as cat:
        _assert_consistent(cat, 24)
