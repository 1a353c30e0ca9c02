"""Copies of a recording are found in a catalog of any size: the limit comes from copies of the
catalog's own tracks measured with its model, so three songs and a hundred behave alike. Songs
built like recorded music (chords, bass, melody, drums), the copies made as users make them
(FFmpeg: MP3 and AAC at 128 kbit/s, a start trimmed by 1 s)."""

import subprocess
from pathlib import Path

import pytest

from mertsearch import Catalog
from mertsearch.indexer.duplicates import BY_COPIES, BY_DISTINCT, BY_FLOOR, MAX_DISTANCE, META_KEY, DuplicateRule
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, song_track, write_audio, write_tiny_mert

# name -> FFmpeg's arguments between input and output
COPY_ARGS = {
    "copy.mp3": ["-b:a", "128k"],
    "copy.m4a": ["-c:a", "aac", "-b:a", "128k"],
    "copy-trimmed.flac": ["-ss", "1"],
}


def make_copies(source: Path, folder: Path, names=tuple(COPY_ARGS)) -> set[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), *COPY_ARGS[name], str(folder / name)]
        subprocess.run(command, check=True)
    return set(names)


def songs(folder: Path, count: int, *, seconds, make=song_track) -> list[Path]:
    """``count`` distinct pieces; ``seconds(n)`` long each (pieces of one length included: the
    duration cannot tell those apart)."""
    return [
        write_audio(folder / f"song{n:03d}.flac", make(700 + n, seconds(n), SAMPLE_RATE), SAMPLE_RATE)
        for n in range(count)
    ]


def groups(cat) -> list[set[str]]:
    return [{Path(p).name for p in [g["path"], *(a["path"] for a in g["alternates"])]} for g in cat.duplicates()]


def rule(cat) -> DuplicateRule:
    return DuplicateRule.from_meta(cat.store.meta(META_KEY))


@pytest.mark.parametrize("count", [3, 8])
def test_copies_added_to_a_small_catalog_are_linked_and_its_distinct_songs_are_not(tmp_path, count):
    """The first thing a new user tries: a few songs, then copies of one of them."""
    music = tmp_path / "music"
    pieces = songs(music, count, seconds=lambda n: 30 if n < 2 else 22 + 7 * n)  # the first two of one length
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        assert cat.index_paths([music]).added == count
        assert groups(cat) == []
        made = make_copies(pieces[0], music / "copies")
        assert cat.index_paths([music]).added == len(made)
        assert groups(cat) == [{pieces[0].name} | made]
        fitted = rule(cat)  # set by copies measured on the catalog's own tracks, or by the floor above them
        assert fitted.basis in (BY_COPIES, BY_FLOOR) and fitted.copies.tracks == min(3, count)
        assert "copies of excerpts of up to 20 s of" in fitted.describe()
        results = cat.search(pieces[0], k=count + 5)
        assert len(results) == count and len(results[0].alternates) == len(made)  # each recording once


def test_songs_and_their_copies_indexed_at_once(tmp_path):
    """Three songs of one length and copies of one, in one run: the copies arrive under the empty
    catalog's limit; the closing fit measures copies and links them then."""
    music = tmp_path / "music"
    pieces = songs(music, 3, seconds=lambda n: 25)
    made = make_copies(pieces[1], music)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        cat.index_paths([music])
        assert groups(cat) == [{pieces[1].name} | made]


def test_copies_are_measured_by_an_ingest_once_files_could_be_linked(tmp_path, monkeypatch):
    """Songs of other lengths cannot be copies of each other: nothing is measured for them. Once a
    copy arrives, the ingest measures; repair and readers use that, and never run the model."""
    music = tmp_path / "music"
    pieces = songs(music, 3, seconds=lambda n: 20 + 10 * n)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        cat.index_paths([music])
        assert rule(cat).copies is None
        made = make_copies(pieces[1], music, names=["copy.mp3"])
        cat.index_paths([music])
        measured = rule(cat)
        assert measured.copies.tracks == 3 and groups(cat) == [{pieces[1].name} | made]

    def refused(*_args):
        raise AssertionError("the model was run")

    monkeypatch.setattr("mertsearch.catalog.duplicates.measure_copies", refused)
    with Catalog.open(tmp_path / "cat") as cat:
        cat.repair(full=True)  # fits the limit again, on the stored measurement
        assert rule(cat) == measured and groups(cat) == [{pieces[1].name} | made]


def test_a_small_catalog_of_a_tiny_random_model(tmp_path):
    """A tiny random model puts everything ten to a hundred times closer, distinct tunes of one length
    too: the limit follows it. Its windows move with a shift of a few milliseconds as much as
    with another tune, so the tunes are a whole number of windows long: an AAC copy's padding
    at the end then adds no window of its own."""
    music = tmp_path / "music"
    pieces = songs(music, 3, seconds=lambda n: 15 if n < 2 else 25, make=melody_track)
    model, _ = write_tiny_mert(tmp_path / "model", overrides=DISCERNING)
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        cat.index_paths([music])
        made = make_copies(pieces[0], music / "copies")
        cat.index_paths([music])
        assert groups(cat) == [{pieces[0].name} | made]
        fitted = rule(cat)
        assert fitted.basis in (BY_COPIES, BY_DISTINCT) and fitted.distance < MAX_DISTANCE / 5


@pytest.mark.slow
def test_a_hundred_songs_and_copies_of_three(tmp_path):
    """Short songs of nine lengths, so that many share one, and copies of three, in one run: the
    copies are linked as in a small catalog, and no two songs are."""
    music = tmp_path / "music"
    pieces = songs(music, 100, seconds=lambda n: 12 + n % 9)
    copied = {n: make_copies(pieces[n], music / f"copies{n}") for n in (0, 41, 77)}
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        cat.index_paths([music])
        assert sorted(groups(cat), key=sorted) == sorted(
            ({pieces[n].name} | names for n, names in copied.items()), key=sorted
        )
        assert rule(cat).basis in (BY_COPIES, BY_DISTINCT)
