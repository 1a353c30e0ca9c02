"""The beets plugin through the real `beet` command: a temporary beets library imported as-is from
generated tagged files, `beet mertsearch index`, then `beet similar`.

The nearest item is known by construction: "Near" is the same tune as "Seed" from 5 s later (15 of
its 20 s shared), the others are other tunes; their lengths differ by more than 2.5 s, so no two
files are taken for copies of one recording."""

from __future__ import annotations

import subprocess
import sys

import mutagen
import pytest

from mertsearch import Catalog
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, write_audio, write_tiny_mert
from tests.mpd_server import environment

pytestmark = pytest.mark.slow


def _beet(beetsdir, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "beets", *args],
        env={**environment(), "BEETSDIR": str(beetsdir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("beets")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    tune = melody_track(7, 29, SAMPLE_RATE)
    tracks = {
        "Seed": tune[:, : 20 * SAMPLE_RATE],
        "Near": tune[:, 5 * SAMPLE_RATE :],
        **{f"Other{n}": melody_track(20 + n, 12 + 4 * n, SAMPLE_RATE) for n in range(4)},
    }
    music = root / "music"
    for artist, samples in tracks.items():
        path = write_audio(music / artist / "song.flac", samples, SAMPLE_RATE)
        tagged = mutagen.File(str(path), easy=True)
        tagged["artist"], tagged["album"], tagged["title"] = artist, f"{artist} album", f"{artist} song"
        tagged.save()
    beetsdir = root / "config"
    beetsdir.mkdir()
    (beetsdir / "config.yaml").write_text(
        f"directory: {music}\n"
        f"library: {root / 'library.db'}\n"
        "plugins: [mertsearch]\n"
        "mertsearch:\n"
        f"  catalog: {root / 'catalog'}\n"
        f"  model: {model}\n"
        "  layer: 2\n"
    )
    _beet(beetsdir, "import", "-A", "-C", "-W", "-q", str(music))
    assert len(_beet(beetsdir, "ls").stdout.splitlines()) == 6
    return beetsdir, music


def test_index_then_similar_lists_the_library_items_nearest_the_query(library):
    beetsdir, music = library
    indexed = _beet(beetsdir, "mertsearch", "index")
    assert "6 added" in indexed.stdout, indexed.stdout
    again = _beet(beetsdir, "mertsearch", "index")
    assert "0 added" in again.stdout and "6 unchanged" in again.stdout, again.stdout

    lines = _beet(beetsdir, "similar", "artist:Seed", "-k", "3").stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("Near - Near album - Near song  ("), lines  # beets' own item format
    assert not any(line.startswith("Seed") for line in lines)

    paths = _beet(beetsdir, "similar", "title:Seed song", "-k", "1", "-f", "$path").stdout.splitlines()
    assert [line.split("  (")[0] for line in paths] == [str(music / "Near" / "song.flac")]


def test_tags_written_by_beets_are_taken_up_without_embedding_again(library):
    """beet modify writes the tags and moves the file to its new artist's folder: the track keeps
    its id and vectors, with the new tags and path."""
    beetsdir, music = library
    _beet(beetsdir, "mertsearch", "index")
    with Catalog.open(beetsdir.parent / "catalog") as cat:
        before = cat.track(music / "Near" / "song.flac")["track_id"]
    _beet(beetsdir, "modify", "-y", "-w", "artist:Near", "artist=Ближе", "title=Почти")
    (path,) = _beet(beetsdir, "ls", "-f", "$path", "artist:Ближе").stdout.splitlines()
    indexed = _beet(beetsdir, "mertsearch", "index")
    assert "0 added, 0 updated, 0 retagged, 1 moved, 5 unchanged" in indexed.stdout, indexed.stdout
    with Catalog.open(beetsdir.parent / "catalog") as cat:
        (found,) = cat.find_tracks("ПОЧТИ")["tracks"]
    assert (found["track_id"], found["artist"], found["path"]) == (before, "Ближе", path)


def test_similar_says_what_is_wrong_in_one_line(library):
    beetsdir, _music = library
    nothing = _beet(beetsdir, "similar", "artist:Nobody", check=False)
    assert nothing.returncode != 0
    assert "no item matches" in nothing.stderr + nothing.stdout
    assert "Traceback" not in nothing.stderr
