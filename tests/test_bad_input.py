"""Every kind of bad or unusual input: recorded with a reason, the run goes on, and no retry loop."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from tests.helpers import assert_consistent, tone_track, write_audio

from .servers import running

SR = 44100
INVALID_UTF8 = os.fsdecode(b"caf\xe9 \xff.flac")  # Latin-1 bytes: not valid UTF-8


def _ffmpeg(path: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", *args, str(path)], check=True)
    return path


@pytest.fixture
def messy(tmp_path) -> tuple[Path, set[str], set[str]]:
    """A folder of good, unusual and bad files: (folder, names that must index, names that must fail)."""
    root = tmp_path / "messy"
    good = {
        "plain.flac": lambda p: write_audio(p, tone_track(1, 8, SR), SR),
        "name with spaces 🎵 ünïcode.wav": lambda p: write_audio(p, tone_track(2, 7, SR), SR),
        INVALID_UTF8: lambda p: write_audio(tmp_path / "c.flac", tone_track(3, 6, SR), SR).rename(p),
        "8k-mono.wav": lambda p: write_audio(p, tone_track(4, 6, 8000, channels=1), 8000),
        "96k-6ch.flac": lambda p: write_audio(p, tone_track(5, 6, 96000, channels=6), 96000),
        "24bit.wav": lambda p: _ffmpeg(p, "-i", "sine=f=330:d=6", "-c:a", "pcm_s24le"),
        "tiny-tail.mp3": lambda p: write_audio(p, tone_track(6, 5.5, SR), SR),
    }
    bad = {
        "empty.wav": lambda p: p.write_bytes(b""),
        "text.ogg": lambda p: p.write_text("not audio at all\n" * 200),
        "garbage.mp3": lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)),
        "header-only.flac": lambda p: p.write_bytes(
            write_audio(tmp_path / "x.flac", tone_track(7, 6, SR), SR).read_bytes()[:200]
        ),
        "silent.wav": lambda p: write_audio(p, np.zeros((2, SR * 4), np.float32), SR),
        "too-short.wav": lambda p: write_audio(p, tone_track(8, 0.5, SR), SR),
        "pipe.wav": lambda p: os.mkfifo(p),
        "gone.flac": lambda p: p.symlink_to(root / "does-not-exist.flac"),
        "self-link.wav": lambda p: p.symlink_to(p),
    }
    for name, make in {**good, **bad}.items():
        path = root / "sub" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    (root / "sub" / "loop").symlink_to(root)  # a folder link back up: never followed
    return root, set(good), set(bad)


def _names(paths) -> set[str]:
    return {os.path.basename(path) for path in paths}


def test_bad_files_are_recorded_and_not_retried_and_odd_names_work(tmp_path, tiny_model, messy, database):
    root, good, bad = messy
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        report = cat.index_paths([root])
        reasons = {os.path.basename(f.path): f.reason for f in report.failed}
        assert set(reasons) == bad and report.added == len(good)
        assert "empty" in reasons["empty.wav"] and "silent" in reasons["silent.wav"]
        assert "too short" in reasons["too-short.wav"] and "not a regular file" in reasons["pipe.wav"]
        assert "cannot read" in reasons["gone.flac"] and "cannot read" in reasons["self-link.wav"]
        assert all("cannot decode" in reasons[name] for name in ("text.ogg", "garbage.mp3", "header-only.flac"))
        assert_consistent(cat, len(good))

        again = cat.index_paths([root])
        # Files that could be looked at are not retried until they change; links to nothing are
        # reported again (there is no file to compare), never decoded.
        assert again.unchanged == len(good) and again.added == 0
        assert again.skipped_failed == len(bad) - 2 and _names(f.path for f in again.failed) == {
            "gone.flac",
            "self-link.wav",
        }

        found = cat.track(str(root / "sub" / INVALID_UTF8))
        assert found["path"] == str(root / "sub" / INVALID_UTF8)
        assert cat.similar(str(root / "sub" / INVALID_UTF8), k=3)
        assert {Path(r.path).name for r in cat.similar(str(root / "sub" / "plain.flac"), k=10)} >= {INVALID_UTF8}


def test_invalid_utf8_names_in_json_output_and_the_api(tmp_path, tiny_model, messy, database):
    root, good, _ = messy
    command = [sys.executable, "-m", "mertsearch.cli", "index", str(root), "--catalog", str(tmp_path / "cat")]
    run = subprocess.run(
        [*command, "--model", str(tiny_model), "--layer", "3", "--json"], capture_output=True, check=True
    )
    document = json.loads(run.stdout)  # valid JSON although a name is not valid UTF-8
    assert document["added"] == len(good)
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mertsearch.cli",
            "similar",
            str(root / "sub" / INVALID_UTF8),
            "--catalog",
            str(tmp_path / "cat"),
            "--json",
        ],
        capture_output=True,
        check=True,
    )
    assert json.loads(listed.stdout)["results"]
    with running(Settings(catalog=tmp_path / "cat")) as url:
        page = httpx.get(f"{url}/tracks", params={"q": "caf"}).json()
        (track,) = page["tracks"]
        assert track["path"].endswith("caf\udce9 \udcff.flac")
        audio = httpx.get(f"{url}/tracks/{track['track_id']}/audio")
        assert audio.status_code == 200 and audio.content[:4] == b"fLaC"
