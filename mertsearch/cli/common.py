"""What every command shares: the app, the consoles, the common options and the error boundary."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mertsearch import __version__
from mertsearch.errors import MertSearchError

app = typer.Typer(
    help="Find similar music: index a folder with a MERT layer, then search it with an audio clip or a track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No console markup: paths, tags and messages are printed as they are ("[live] take 2.flac").
out = Console(markup=False)
err = Console(stderr=True, markup=False)
_state = {"debug": False}

CatalogOpt = Annotated[Path, typer.Option("--catalog", "-c", help="Catalog directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
KOpt = Annotated[int, typer.Option("-k", "--k", help="Number of results.", min=1, max=10000)]
LayerOpt = Annotated[
    int | None, typer.Option(help="hidden_states index to search (0 = input to the first layer); default: the model's.")
]
LayersOpt = Annotated[
    str | None,
    typer.Option(help="Several layers, searched as the mean of their normalised vectors ('6,7,8'), or 'all'."),
]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait when another process is writing to the catalog.", min=0)]
DeviceOpt = Annotated[str | None, typer.Option(help="Torch device (cpu, cuda, cuda:1); default: cuda if present.")]
# For commands that run a catalog's model: where its weights are now, when not where it was built.
WeightsOpt = Annotated[
    str | None, typer.Option("--model", help="Where the catalog's model weights are now (checked by hash).")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help="Model arithmetic: auto (bf16 only where this machine computes it natively, faster, and within "
        "cosine 0.9999 of fp32; else fp32), fp32, bf16 or fp16 (the last two trade accuracy for speed). "
        "Default: $MERTSEARCH_PRECISION, else auto.",
        show_default=False,
    ),
]


def friendly(command: Callable) -> Callable:
    """Turn known errors into one line on stderr and a non-zero exit (a traceback only with --debug)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MertSearchError as exc:
            if _state["debug"]:
                raise
            err.print(Text.assemble(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted; run the same command again to carry on where it stopped")
            raise typer.Exit(130) from None

    return run


def print_json(document: dict) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"mertsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


def show_results(results, as_json: bool, *, steps: bool = False) -> None:
    """A table of results. ``steps``: a song path, whose score is each track's with the one before
    it and whose tracks match no part of a query, so no match columns."""
    if as_json:
        print_json({"results": [r.as_dict() for r in results]})
        return
    if not results:
        out.print("no results")
        return
    clips = any(r.offset is not None for r in results)
    columns = {
        "#": lambda rank, r: str(rank),
        "score with the last" if steps else "score": lambda rank, r: f"{r.score:.3f}",
        "similarity": lambda rank, r: "-" if r.similarity is None else f"{r.similarity:.3f}",
        "id": lambda rank, r: str(r.track_id),
        "artist": lambda rank, r: r.artist or "",
        "title": lambda rank, r: r.title or "",
        "album": lambda rank, r: r.album or "",
    }
    if not steps:
        columns["match"] = lambda rank, r: f"{clock(r.match.start)}-{clock(r.match.end)}"
        columns["in query"] = lambda rank, r: f"{clock(r.query.start)}-{clock(r.query.end)}"
    if clips:
        columns["clip at"] = lambda rank, r: "" if r.offset is None else clock(r.offset)
    columns["path"] = lambda rank, r: r.path + "".join(f"\n  = {alternate}" for alternate in r.alternates)
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for rank, r in enumerate(results, start=1):
        table.add_row(*(cell(rank, r) for cell in columns.values()))
    out.print(table)


def clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"
