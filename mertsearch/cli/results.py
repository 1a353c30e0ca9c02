"""Search results as people and scripts read them: a table that fits the terminal, one
tab-separated line per result when piped, or JSON.

The table shows one number per result (its similarity where the catalog is calibrated, else its
score), the track as "artist - title" (the file name where it has no title) and the end of each
path that tells the files apart. The best window pair behind a track's score ("match", "in
query") means something only for a clip, so only a clip search shows it; ``--wide`` shows
every field and full paths.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from mertsearch.cli.common import OUTPUT, clock, err, out, print_json, say
from mertsearch.cli.layout import Column, Whole, add_row, fitted, short_paths, show_wide, tsv

WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="Every field, full paths (piped: in each line).", rich_help_panel=OUTPUT),
]


PARTIAL = (
    "fewer results than asked: the filters and caps leave only these among the nearest few thousand "
    "tracks, where the search stops; tracks farther off might still qualify"
)


def show_results(results, as_json: bool, *, steps: bool = False, wide: bool = False) -> None:
    """Results as JSON, a table or lines. ``steps``: a song path, whose score is each track's with
    the one before it and whose tracks match no part of a query."""
    partial = getattr(results, "partial", False)  # a song path is never partial
    if as_json:
        print_json({"results": [r.as_dict() for r in results], "partial": partial})
        return
    if partial:
        err.print(PARTIAL, highlight=False)
    if not results:
        say("no results")
        return
    if not out.is_terminal:
        sys.stdout.write("".join(tsv(fields) + "\n" for fields in _lines(results, steps=steps, wide=wide)))
        return
    if wide:
        show_wide(out, [c for c in _wide_columns(results, steps) if _shown(c)])
        return
    out.print(fitted([c for c in _columns(results, steps) if _shown(c)], out.width))


def _lines(results, *, steps: bool, wide: bool):
    """Per result: rank, similarity (the score where there is none), id, where a clip starts (for
    a clip search), the full path, then the other files of its recording; ``wide``: every field."""
    clips = any(r.offset is not None for r in results)
    calibrated = any(r.similarity is not None for r in results)
    for rank, r in enumerate(results, start=1):
        if wide:
            fields = _wide_fields(rank, r, steps=steps, clips=clips)
        else:
            fields = [rank, _number(rank, r, steps=steps, calibrated=calibrated), r.track_id]
            fields += [_offset(r)] if clips else []
        yield [*fields, r.path, *r.alternates]


def _columns(results, steps: bool) -> list[Column]:
    clips = any(r.offset is not None for r in results)
    calibrated = any(r.similarity is not None for r in results)
    tagged = any(r.title or r.artist for r in results)  # else the track column repeats the file names
    names = short_paths([p for r in results for p in (r.path, *r.alternates)])
    columns = [
        Column("#", justify="right"),
        Column(("similarity" if calibrated else "score") + ("\nto previous" if steps else ""), justify="right"),
        Column("id", justify="right"),
        # Where the terminal is too narrow, the album goes first, then the match (--wide has it),
        # then the file names are cut in the middle, then the track goes.
        *([Column("clip at", justify="right"), Column("match", drop=2)] if clips else []),
        *([Column("track", floor=12, drop=1)] if tagged else []),
        Column("album", floor=10, drop=3),
        Column("file", floor=16, names=1),
    ]
    for rank, r in enumerate(results, start=1):
        cells = [str(rank), _number(rank, r, steps=steps, calibrated=calibrated), str(r.track_id)]
        cells += [_offset(r), _range(r.match)] if clips else []
        cells += [_track(r)] if tagged else []
        add_row(columns, [*cells, r.album or "", Whole(names[r.path])])
        for alternate in r.alternates:  # other files of the recording, on rows of their own
            add_row(columns, [""] * (len(columns) - 1) + [Whole(names[alternate], prefix="= ")])
    return columns


def _wide_columns(results, steps: bool) -> list[Column]:
    clips = any(r.offset is not None for r in results)
    after = "\nto previous" if steps else ""
    headers = ["#", f"score{after}", f"similarity{after}", "id", "artist", "title", "album"]
    headers += ([] if steps else ["match", "in query"]) + (["clip at"] if clips else []) + ["path"]
    numbers = {"#", f"score{after}", f"similarity{after}", "id", "clip at"}
    columns = [Column(h, justify="right" if h in numbers else "left") for h in headers]
    for rank, r in enumerate(results, start=1):
        add_row(columns, [str(field) for field in _wide_fields(rank, r, steps=steps, clips=clips)] + [r.path])
        for alternate in r.alternates:
            add_row(columns, [""] * (len(columns) - 1) + [f"= {alternate}"])
    return columns


def _wide_fields(rank: int, r, *, steps: bool, clips: bool) -> list:
    """Every field of a result but its paths, as --wide shows them."""
    first = steps and rank == 1  # a path's start has no track before it
    fields = [rank, "-" if first else f"{r.score:.3f}", "-" if first else _similarity(r), r.track_id]
    fields += [r.artist or "", r.title or "", r.album or ""]
    fields += [] if steps else [_range(r.match), _range(r.query)]
    return fields + ([_offset(r)] if clips else [])


def _number(rank: int, r, *, steps: bool, calibrated: bool) -> str:
    """The one number shown: the similarity, or the score in a catalog without a calibration."""
    if steps and rank == 1:
        return "-"  # a path's start has no track before it
    return _similarity(r) if calibrated else f"{r.score:.3f}"


def _shown(column: Column) -> bool:
    """Columns with nothing in any row are left out (untagged tracks: no track, no album)."""
    return any(str(getattr(cell, "text", cell)) for cell in column.cells)


def _track(r) -> str | Whole:
    """ "Artist - Title"; an untagged track by its file name, which is never wrapped."""
    if r.title:
        return f"{r.artist} - {r.title}" if r.artist else r.title
    name = os.path.basename(r.path)
    return Whole(f"{r.artist} - {name}" if r.artist else name)


def _similarity(r) -> str:
    return "-" if r.similarity is None else f"{r.similarity:.3f}"


def _offset(r) -> str:
    return "" if r.offset is None else clock(r.offset)


def _range(span) -> str:
    return f"{clock(span.start)}-{clock(span.end)}"
