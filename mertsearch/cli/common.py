"""What every command shares: the app, the consoles, the common options and the error boundary."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup, TyperOption

from mertsearch import __version__
from mertsearch.errors import MertSearchError


class _Help:
    """What --help shows, for commands and groups alike. Paragraphs of a docstring flow as one
    (its line breaks fit the source, not the terminal); a list of commands shows each one's
    first paragraph, one line; flags show no value type (typer labels them "<bool>", as though
    they took one); and "<int range> [x>=1]" is "<int> [x>=1]", narrower, so that option names
    stay whole at 80 columns."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(self.help).split("\n\n"))
            if self.short_help is None:
                self.short_help = self.help.split("\n\n")[0]

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if not isinstance(param, TyperOption) or param.metavar is not None:
                continue
            param.metavar = "" if param.is_flag else param.display_type(ctx).replace(" range>", ">")
        return params


class _Command(_Help, TyperCommand):
    pass


class _Group(_Help, TyperGroup):
    pass


class Typer(typer.Typer):
    """typer.Typer whose commands and groups show --help as _Help says."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args, **kwargs):
        return super().command(*args, cls=_Command, **kwargs)


app = Typer(
    help="Find similar music: index a folder with a MERT layer, then search it with an audio clip or a track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Console(Console):
    """Messages wrap at a terminal's width; into a pipe or a file each stays on one line, so what
    reads them never finds a path or a number broken in two."""

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:
        if soft_wrap is None and not self.is_terminal:
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


# No console markup nor emoji codes: paths, tags and messages are printed as they are
# ("[live] take 2.flac", "a:fire:b.mp3").
out = _Console(markup=False, emoji=False)
err = _Console(stderr=True, markup=False, emoji=False)
_state = {"debug": False}

# Panels of --help that group options, so that each panel's names stay whole at 80 columns.
FILTERS, DIVERSITY, QUEUE, OUTPUT, MODEL = "Filters", "Diversity", "Queue", "Output", "Model"

CatalogOpt = Annotated[Path, typer.Option("--catalog", "-c", help="Catalog directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]
KOpt = Annotated[int, typer.Option("-k", "--k", help="Number of results.", min=1, max=10000)]
LayerOpt = Annotated[
    int | None,
    typer.Option(
        help="hidden_states index to search (0 = input to the first layer); default: the model's.",
        rich_help_panel=MODEL,
    ),
]
LayersOpt = Annotated[
    str | None,
    typer.Option(
        help="Several layers, searched as the mean of their normalised vectors ('6,7,8'), or 'all'.",
        rich_help_panel=MODEL,
    ),
]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait when another process is writing to the catalog.", min=0)]
DeviceOpt = Annotated[
    str | None, typer.Option(help="Torch device (cpu, cuda, cuda:1); default: cuda if present.", rich_help_panel=MODEL)
]
# For commands that run a catalog's model: where its weights are now, when not where it was built.
WeightsOpt = Annotated[
    str | None,
    typer.Option("--model", help="Where the catalog's model weights are now (checked by hash).", rich_help_panel=MODEL),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help="auto (bf16 where this machine computes it natively and faster, within cosine 0.9999 of fp32; "
        "else fp32), fp32, bf16 or fp16. Default: $MERTSEARCH_PRECISION, else auto.",
        show_default=False,
        rich_help_panel=MODEL,
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


def say(message: str) -> None:
    """A note that there is nothing to list: on stdout at a terminal, on stderr when piped, where
    what reads the lines would take it for one."""
    (out if out.is_terminal else err).print(message, highlight=False)


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


def clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"
