"""What the command line prints at a terminal 80 columns wide and into a pipe: result tables that
fit without breaking a number, a time or a file name, a line per result for scripts, listings that
fit, and --help whose option names stay whole."""

import io
import json
import os
import re
import shutil

import mutagen
import pytest
import typer
from rich.console import Console

from mertsearch import Catalog
from mertsearch.cli import app
from mertsearch.cli.common import clock
from mertsearch.cli.layout import Column, Whole, elide, fitted, short_paths
from mertsearch.cli.quality import degradation_columns
from tests.helpers import SAMPLE_RATE, cli, melody_track, screen, write_audio

# path: (artist, album, title, seconds); untagged files have no tags at all.
SONGS = {
    "Ann Arbor Ensemble/First Light/01 Morning over the lake.flac": (
        "Ann Arbor Ensemble",
        "First Light",
        "Morning over the lake (extended version)",
        30,
    ),
    "Ann Arbor Ensemble/First Light/02 Evening.flac": ("Ann Arbor Ensemble", "First Light", "Evening", 25),
    "Bob/Blue/01 Intro.flac": ("Bob", "Blue", "Intro", 25),
    "Bob/Red/01 Intro.flac": ("Bob", "Red", "Intro", 20),
    "Unsorted/recordings from the rehearsal room/take 3 final mix.wav": (None, None, None, 130),
    "Unsorted/old/take 3 final mix.wav": (None, None, None, 20),
}
COPY = "Bob/Blue/01 Intro (copy).flac"  # the same recording as Bob/Blue/01 Intro.flac
LONG = "Unsorted/recordings from the rehearsal room/take 3 final mix.wav"
CLOCK = re.compile(r"\d+:\d\d\.\d")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The songs above (one copied, one file that is no audio) indexed with the spectral encoder:
    (catalog directory, music folder), shared by the module's tests, which must not change it."""
    root = tmp_path_factory.mktemp("output")
    music = root / "Music Library"
    for n, (name, (artist, album, title, seconds)) in enumerate(SONGS.items()):
        path = write_audio(music / name, melody_track(500 + n, seconds, SAMPLE_RATE), SAMPLE_RATE)
        if artist:
            tagged = mutagen.File(str(path), easy=True)
            tagged["artist"], tagged["album"], tagged["title"] = artist, album, title
            tagged.save()
    shutil.copy(music / "Bob/Blue/01 Intro.flac", music / COPY)
    (music / "Unsorted" / "broken take.mp3").write_bytes(b"not audio" * 100)
    with Catalog.create(root / "cat", model="spectral") as cat:
        assert cat.index_paths([music], decoders=0).added == 7
    return root / "cat", music


def _results(*args) -> list[dict]:
    return json.loads(cli(*args, "--json").stdout)["results"]


def _fits(lines: list[str], width: int = 80) -> None:
    assert lines and all(len(line) <= width for line in lines), "\n".join(lines)


@pytest.mark.parametrize("command", [["similar", "1"], ["radio", "1", "2"], ["path", "1", "4", "-n", "4"]])
def test_track_results_fit_80_columns_with_names_whole(library, command):
    directory, _ = library
    args = [*command, "-c", directory, "-k", 5] if command[0] != "path" else [*command, "-c", directory]
    results = _results(*args)
    lines = screen(*args)
    _fits(lines)
    text = "\n".join(lines)
    # One number, no window pair: a track seed matches no part of a clip.
    assert "similarity" in lines[0] + lines[1] and "score" not in text
    assert "match" not in text and "in query" not in text and "clip at" not in text
    for r in results:
        name = os.path.basename(r["path"])
        assert any(name in line for line in lines), name  # never split over two lines
        if r["title"] is None:  # untagged: shown by its file name
            assert sum(name in line for line in lines) >= 1
        for alternate in r["alternates"]:  # duplicate files stay in sight
            assert any(f"= {os.path.basename(alternate)}" in line for line in lines)
        if r["similarity"] is not None and not (command[0] == "path" and r is results[0]):
            assert f"{r['similarity']:.3f}" in text


def test_same_file_names_show_the_folders_that_tell_them_apart(library):
    directory, music = library
    text = "\n".join(screen("similar", music / "Ann Arbor Ensemble/First Light/02 Evening.flac", "-c", directory))
    assert "Red/01 Intro.flac" in text and "Blue/01 Intro.flac" in text and "old/take 3 final mix.wav" in text
    assert "Bob - Intro" in text and str(music) not in text  # no full paths in the table


def test_a_clip_search_fits_80_columns_with_its_times_whole(library, tmp_path):
    directory, _ = library
    tune = melody_track(504, 130, SAMPLE_RATE)  # the long untagged take, cut at 1:58.4
    clip = write_audio(tmp_path / "clip.wav", tune[:, int(118.4 * SAMPLE_RATE) : int(126.4 * SAMPLE_RATE)], SAMPLE_RATE)
    results = _results("search", clip, "-c", directory, "-k", 4)
    assert results[0]["path"].endswith(LONG)
    for width in (80, 60):
        lines = screen("search", clip, "-c", directory, "-k", 4, columns=width)
        _fits(lines, width)
        assert "clip at" in lines[0]
        for rank, r in enumerate(results, start=1):
            row = next(line for line in lines if line.split()[:1] == [str(rank)])
            assert clock(r["offset"]) in row
        assert all(CLOCK.fullmatch(time) for line in lines for time in re.findall(r"\d+:[\d.]+", line))
    assert re.search(r"\b1:5\d\.\d\b", "\n".join(screen("search", clip, "-c", directory, "-k", 1)))
    # Piped: rank, similarity, id, where the clip starts, the full path, then the other files.
    for line, r in zip(cli("search", clip, "-c", directory, "-k", 4).stdout.splitlines(), results, strict=True):
        assert line.split("\t") == [
            str(results.index(r) + 1),
            f"{r['similarity']:.3f}",
            str(r["track_id"]),
            clock(r["offset"]),
            r["path"],
            *r["alternates"],
        ]


def test_piped_results_are_a_line_each_with_the_full_path(library):
    directory, _ = library
    results = _results("similar", 1, "-c", directory, "-k", 6)
    piped = cli("similar", 1, "-c", directory, "-k", 6)
    lines = piped.stdout.splitlines()
    assert len(lines) == len(results) == 5  # six recordings but the seed
    for rank, (line, r) in enumerate(zip(lines, results, strict=True), start=1):
        assert line.split("\t") == [
            str(rank),
            f"{r['similarity']:.3f}",
            str(r["track_id"]),
            r["path"],
            *r["alternates"],
        ]
    assert any(r["alternates"] for r in results)
    nothing = cli("similar", 1, "-c", directory, "--filter", "artist=Nobody")
    assert nothing.stdout == "" and "no results" in nothing.stderr


def test_wide_shows_every_field_and_full_paths(library):
    directory, _ = library
    results = _results("similar", 1, "-c", directory, "-k", 6)
    lines = screen("similar", 1, "-c", directory, "-k", 6, "--wide")
    header = lines[0].split()
    for name in ("score", "similarity", "id", "artist", "title", "album", "match", "query", "path"):
        assert name in header
    for r in results:
        assert any(r["path"] in line for line in lines)
        assert any(f"{r['score']:.3f}" in line for line in lines)
    wide = cli("similar", 1, "-c", directory, "-k", 6, "--wide").stdout.splitlines()
    assert [line.split("\t")[9] for line in wide] == [r["path"] for r in results]


def test_listings_fit_80_columns_and_pipe_unbroken(library):
    directory, music = library
    _fits(screen("models"))
    assert cli("models").stdout.splitlines()[0].split("\t")[:3] == ["name", "hub repo", "revision"]
    info = screen("info", "-c", directory)
    _fits(info)
    assert any(line.startswith("index.tracks.kind:") for line in info)
    assert f"catalog: {directory}" in cli("info", "-c", directory).stdout.splitlines()
    duplicates = screen("duplicates", "-c", directory)
    _fits(duplicates)
    assert duplicates[0] == f"under {music / 'Bob/Blue'}:" and any(line.startswith("= ") for line in duplicates)
    piped = cli("duplicates", "-c", directory).stdout.splitlines()
    paths = {re.fullmatch(r"(  = )?\d+ (.+)", line).group(2) for line in piped}
    assert paths == {str(music / "Bob/Blue/01 Intro.flac"), str(music / COPY)}
    failures = screen("failures", "-c", directory)
    _fits(failures)
    assert failures[0] == f"under {music / 'Unsorted'}:" and "broken take.mp3" in failures[2]
    reason = cli("failures", "-c", directory).stdout
    assert reason.startswith(f"{music / 'Unsorted' / 'broken take.mp3'}: ") and reason.count("\n") == 1


def _rendered(table, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def _commands(group, prefix=()):
    yield prefix, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*prefix, name))


def test_help_of_every_command_keeps_option_names_whole_at_80_columns():
    for path, command in _commands(typer.main.get_command(app)):
        lines = screen(*path, "--help")
        _fits(lines)
        text = "\n".join(lines)
        assert "<bool>" not in text and "…" not in text, path
        for param in command.params:
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name)


def test_the_list_of_commands_is_a_line_each():
    lines = screen("--help")
    start = next(n for n, line in enumerate(lines) if "Commands" in line)
    entries = lines[start + 1 : next(n for n in range(start + 1, len(lines)) if lines[n].startswith("╰"))]
    names = typer.main.get_command(app).commands
    assert [line.split()[1] for line in entries] == list(names)


def test_short_paths_add_folders_only_where_names_clash():
    paths = ["/m/a/Disc 1/01.flac", "/m/b/Disc 1/01.flac", "/m/b/02.flac", "/x/02.flac", "/m/c/03.flac"]
    assert short_paths(paths) == {
        "/m/a/Disc 1/01.flac": os.path.join("a", "Disc 1", "01.flac"),
        "/m/b/Disc 1/01.flac": os.path.join("b", "Disc 1", "01.flac"),
        "/m/b/02.flac": os.path.join("b", "02.flac"),
        "/x/02.flac": os.path.join("x", "02.flac"),
        "/m/c/03.flac": "03.flac",
    }


def test_elide_keeps_the_file_name_and_the_start_of_its_folders():
    path = os.path.join("recordings from the rehearsal room", "take 3 final mix.wav")
    assert elide(path, 80) == path
    assert elide(path, 30) == "recordin…" + os.sep + "take 3 final mix.wav"
    assert elide("01 Morning over the lake.flac", 15) == "01 Morn…ke.flac" and len(elide("x" * 40, 9)) == 9


def test_a_fitted_table_drops_columns_by_rank_before_cutting_names():
    columns = [
        Column("#", cells=["1"]),
        Column("album", cells=["A very long album title indeed"], floor=10, drop=2),
        Column("track", cells=["Some artist - Some rather long title"], floor=12, drop=1),
        Column("file", cells=[Whole(os.path.join("some folder", "a long file name.flac"))], floor=16, names=1),
    ]
    lines = _rendered(fitted(columns, 45), 45)
    _fits(lines, 45)
    text = "\n".join(lines)
    assert "album" not in text and "track" in text and "a long file name.flac" in text
    lines = _rendered(fitted(columns, 36), 36)  # too narrow for both: the name is cut before the track goes
    _fits(lines, 36)
    assert "track" in lines[0] and "…" in lines[1]


def test_the_eval_table_fits_80_columns():
    degradations = {"clean": 1.0, "mixed with another track (-6 dB)": 0.5, "noise 20 dB SNR": 0.75}
    rows = {
        name: {"recall_at_1": v, "recall_at_10": v, "median_position_error_s": 0.25} for name, v in degradations.items()
    }
    report = {"identification": {"degradations": rows}, "baseline": {"degradations": rows}}
    lines = _rendered(fitted(degradation_columns(report, 10), 80), 80)
    _fits(lines)
    assert any("mixed with another track" in line for line in lines) and "spectral" in lines[0]
