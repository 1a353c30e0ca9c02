"""A real crash: the indexer process is killed with SIGKILL in the middle of a run."""

import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from mertsearch import Catalog
from tests.helpers import assert_consistent, tone_track, write_audio


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
        assert_consistent(cat, 24)


# Runs `mertsearch index` with one function patched to SIGKILL the indexer on its Nth call.
_DRIVER = """
import os, signal, sys
point, nth = sys.argv[1], int(sys.argv[2])
calls = [0]

def kill_at_nth(real, after=False, parent=False):
    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth and not after:
            os.kill(os.getppid() if parent else os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if calls[0] == nth and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return patched

if point == "decoding":  # in the decoder worker: kill the indexer while its worker decodes
    import mertsearch.indexer.reader as module
    module.stream_audio = kill_at_nth(module.stream_audio, parent=True)
elif point == "embedding":
    from mertsearch.encoder.mert import MertEncoder as owner
    owner.embed_windows = kill_at_nth(owner.embed_windows)
elif point in ("before-commit", "after-commit"):
    from sqlalchemy.engine.default import DefaultDialect as owner  # every COMMIT sent to SQLite
    owner.do_commit = kill_at_nth(owner.do_commit, after=point == "after-commit")
elif point == "index-write":  # half an index file on disk, then killed
    import faiss, mertsearch.storage.vector_index as module
    real = faiss.write_index
    def half(index, path):
        real(index, path)
        if calls[0] == nth:
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
    module.faiss.write_index = kill_at_nth(half, after=True)
elif point == "index-rename":
    import mertsearch.storage.vector_index as module
    module.os.replace = kill_at_nth(module.os.replace)
sys.argv = ["mertsearch", "index", *sys.argv[3:]]
from mertsearch.cli import main
main()
"""

_POINTS = {
    "decoding": (1, 3),
    "embedding": (1, 6),
    "before-commit": (1, 4),
    "after-commit": (1, 4),
    "index-write": (1, 2),
    "index-rename": (1, 2),
}


@pytest.mark.slow
def test_sigkill_at_every_kind_of_point_loses_nothing(tmp_path, tiny_model):
    rng = np.random.default_rng(7)
    music, catalog = tmp_path / "music", tmp_path / "cat"
    arguments = [str(music), "--catalog", str(catalog), "--model", str(tiny_model), "--layer", "3", "--decoders", "1"]
    files, killed = 0, []
    for _round in range(2):
        for point, (low, high) in _POINTS.items():
            for _ in range(2):  # new files each time, so every run has work to be killed in
                write_audio(
                    music / f"{files:03d}.flac", tone_track(100 + files, float(rng.uniform(6, 14)), 44100), 44100
                )
                files += 1
            nth = int(rng.integers(low, high + 1))
            run = subprocess.run([sys.executable, "-c", _DRIVER, point, str(nth), *arguments], capture_output=True)
            if run.returncode == -signal.SIGKILL:
                killed.append(point)
            else:
                assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert len(killed) >= 10 and set(killed) == set(_POINTS), killed

    final = subprocess.run(
        [sys.executable, "-m", "mertsearch.cli", "index", *arguments, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"failed": []' in final.stdout
    check = subprocess.run(
        [sys.executable, "-m", "mertsearch.cli", "verify", "--catalog", str(catalog)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with Catalog.open(catalog) as cat:
        assert_consistent(cat, files)  # every file exactly once, database and indexes id for id
        assert cat.verify() == []
    assert not list((catalog / "index").glob(".*.tmp"))
