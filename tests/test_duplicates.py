"""The same recording in several files; files gone from disk; removing tracks."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.cli import app
from tests.helpers import DISCERNING, assert_consistent, melody_track, write_audio, write_tiny_mert

SR = 44100


@pytest.fixture
def library(tmp_path):
    """Three tunes; the first also as FLAC, as a 128 kbit/s MP3 and as a byte copy elsewhere."""
    music = tmp_path / "music"
    for n in range(3):
        write_audio(music / f"tune{n}.wav", melody_track(200 + n, 14, SR), SR)
    write_audio(music / "tune0.flac", melody_track(200, 14, SR), SR)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(music / "tune0.wav"),
            "-b:a",
            "128k",
            str(music / "tune0.mp3"),
        ],
        check=True,
    )
    (music / "copies").mkdir()
    shutil.copy(music / "tune0.wav", music / "copies" / "tune0 (1).wav")
    model, _ = write_tiny_mert(tmp_path / "model", overrides=DISCERNING)
    return music, model


def test_files_of_one_recording_form_a_group_and_show_once(tmp_path, library):
    music, model = library
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        assert cat.index_paths([music]).added == 6
        groups = cat.duplicates()
        assert len(groups) == 1
        paths = {groups[0]["path"], *(a["path"] for a in groups[0]["alternates"])}
        assert {p.rsplit("/", 1)[-1] for p in paths} == {"tune0.wav", "tune0.flac", "tune0.mp3", "tune0 (1).wav"}

        results = cat.search(music / "tune0.wav", k=10)
        assert len(results) == 3  # three recordings, each once
        assert len(results[0].alternates) == 3 and results[0].path.rsplit("/", 1)[-1].startswith("tune0")
        # A seed's other files are left out with it.
        assert all(not r.path.rsplit("/", 1)[-1].startswith("tune0") for r in cat.similar(music / "tune0.mp3"))

        # The leader's file changes into another tune: the group carries on under the next file.
        leader = groups[0]["track_id"]
        write_audio(Path(groups[0]["path"]), melody_track(999, 11, SR), SR)
        cat.index_paths([music])
        after = cat.duplicates()
        assert len(after) == 1 and len(after[0]["alternates"]) == 2 and after[0]["track_id"] != leader


def test_files_gone_from_disk_are_removed_on_the_next_run(tmp_path, library):
    music, model = library
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        cat.index_paths([music])
        (music / "tune1.wav").unlink()
        shutil.rmtree(music / "copies")
        report = cat.index_paths([music])
        assert report.removed == 2 and report.unchanged == 4
        assert_consistent(cat, 4)
        cat.index_paths([music / "tune2.wav"])  # indexing one file removes nothing elsewhere
        assert_consistent(cat, 4)


def test_a_folder_with_no_audio_left_keeps_its_tracks_unless_pruned(tmp_path, tiny_model, music):
    """An emptied folder looks like a disk that is not mounted: its tracks stay until asked."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.move(music / "sub", other / "sub")
    runner = CliRunner()
    catalog = tmp_path / "cat"
    base = ["index", "--catalog", str(catalog), "--model", str(tiny_model), "--layer", "3", "--json"]
    assert json.loads(runner.invoke(app, [*base, str(music), str(other)]).stdout)["added"] == 6
    for name in ("a.wav", "b.flac", "c.mp3", "d.ogg"):
        (music / name).unlink()
    (music / "cover.jpg").write_bytes(b"not audio")  # the folder may hold other files
    kept = runner.invoke(app, [*base[:-1], str(music), str(other)])
    assert kept.exit_code == 0, kept.output
    assert "0 removed" in kept.stdout and f"no audio files in {music}" in kept.stderr and "--prune-empty" in kept.stderr
    document = json.loads(runner.invoke(app, [*base, str(music), str(other)]).stdout)
    assert (document["removed"], document["empty_folders"], document["tracks"]) == (0, [str(music)], 6)
    pruned = json.loads(runner.invoke(app, [*base, str(music), str(other), "--prune-empty"]).stdout)
    assert (pruned["removed"], pruned["empty_folders"], pruned["tracks"]) == (4, [str(music)], 2)
    with Catalog.open(catalog) as cat:
        assert_consistent(cat, 2)


def test_a_file_that_cannot_be_looked_at_is_not_taken_for_deleted(tmp_path, tiny_model, music, monkeypatch):
    """A share that went away under a folder answers "not connected", not "no such file": keep its tracks."""
    import errno
    import os

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
        lost = music / "sub"
        shutil.move(lost, tmp_path / "elsewhere")  # the walk finds nothing there now
        real_stat = os.stat

        def stat(path, *args, **kwargs):
            if os.fsdecode(path).startswith(f"{lost}{os.sep}"):
                raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), path)
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)
        report = cat.index_paths([music])
        monkeypatch.undo()
        assert report.removed == 0 and report.unchanged == 4
        assert_consistent(cat, 6)
        assert cat.index_paths([music]).removed == 2  # now they are surely gone


def test_remove_rebuild_and_duplicates_commands(tmp_path, library):
    music, model = library
    catalog = tmp_path / "cat"
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == code, result.output
        return result

    run("index", music, "--catalog", catalog, "--model", model, "--layer", 2)
    groups = json.loads(run("duplicates", "--catalog", catalog, "--json").stdout)["duplicates"]
    assert len(groups) == 1 and len(groups[0]["alternates"]) == 3
    removed = json.loads(run("remove", music / "tune2.wav", "1", "--catalog", catalog, "--json").stdout)["removed"]
    assert len(removed) == 2 and 1 in removed
    rebuilt = json.loads(run("rebuild", "--catalog", catalog, "--json").stdout)
    assert rebuilt["tracks"] == 4
    assert "no track with id 999" in run("remove", "999", "--catalog", catalog, code=1).stderr
    with Catalog.open(catalog) as cat:
        assert_consistent(cat, 4)


def test_an_empty_folder_without_tracks_is_not_reported(tmp_path, tiny_model):
    (tmp_path / "nothing yet").mkdir()
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        report = cat.index_paths([tmp_path / "nothing yet"])
        assert (report.added, report.removed, report.empty_folders) == (0, 0, [])


def test_a_leading_file_embedded_again_keeps_its_group(tmp_path):
    """The first file of a recording changes a little (its gain, so its content hash): embedded again,
    it still holds the recording its copy was linked to, so it keeps leading it, and results show it once."""
    music = tmp_path / "music"
    tune = melody_track(250, 14, SR)
    write_audio(music / "a.flac", tune, SR)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(music / "a.flac"), "-b:a", "128k", str(music / "copy.mp3")],
        check=True,
    )
    write_audio(music / "other.flac", melody_track(251, 20, SR), SR)
    model, _ = write_tiny_mert(tmp_path / "model", overrides=DISCERNING)
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        cat.index_paths([music])
        ids = {Path(row["path"]).name: row["track_id"] for row in cat.find_tracks()["tracks"]}
        groups = cat.duplicates()
        assert [(g["track_id"], [a["track_id"] for a in g["alternates"]]) for g in groups] == [
            (ids["a.flac"], [ids["copy.mp3"]])
        ]

        write_audio(music / "a.flac", tune * np.float32(0.95), SR)
        assert cat.index_paths([music]).updated == 1
        again = cat.duplicates()
        assert [(g["track_id"], [a["track_id"] for a in g["alternates"]]) for g in again] == [
            (ids["a.flac"], [ids["copy.mp3"]])
        ]
        results = cat.search(music / "a.flac", k=10)
        assert [Path(r.path).name for r in results] == ["a.flac", "other.flac"]
        assert [Path(p).name for p in results[0].alternates] == ["copy.mp3"]
