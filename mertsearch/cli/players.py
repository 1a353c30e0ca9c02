"""`mpd-radio`: MPD's queue kept filled with tracks like the last ones, for as long as it runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from mertsearch.cli.common import QUEUE, CatalogOpt, app, friendly, out
from mertsearch.cli.queries import (
    FilterOpt,
    MaxDurationOpt,
    MaxYearOpt,
    MinDurationOpt,
    MinSimilarityOpt,
    MinYearOpt,
    SeedOpt,
    ShuffleOpt,
)


@app.command("mpd-radio")
@friendly
def mpd_radio(
    catalog: CatalogOpt,
    mpd: Annotated[
        str,
        typer.Option(
            "--mpd",
            help="MPD's address: HOST:PORT, HOST (port 6600) or the path of its local socket, with PASSWORD@ "
            "before it if MPD asks for one.",
        ),
    ] = "localhost:6600",
    music_dir: Annotated[
        Path | None,
        typer.Option(
            help="MPD's music_directory as this machine sees it: MPD's song names are relative to it. "
            "Default: asked of MPD, which tells it only over its local socket."
        ),
    ] = None,
    ahead: Annotated[int, typer.Option(help="Keep at least this many songs queued after the current one.", min=1)] = 5,
    filter_: FilterOpt = None,
    min_duration: MinDurationOpt = None,
    max_duration: MaxDurationOpt = None,
    min_year: MinYearOpt = None,
    max_year: MaxYearOpt = None,
    min_similarity: MinSimilarityOpt = None,
    no_repeat_artist: Annotated[
        int | None,
        typer.Option(help="No artist of the last N songs queued or played (default: 3).", min=0, rich_help_panel=QUEUE),
    ] = None,
    no_repeat_album: Annotated[
        int | None,
        typer.Option(help="No album of the last N songs queued or played (default: 5).", min=0, rich_help_panel=QUEUE),
    ] = None,
    shuffle: ShuffleOpt = 0.0,
    seed: SeedOpt = None,
) -> None:
    """Keep MPD's queue filled with tracks like the last ones.

    For as long as it runs: --ahead songs past the current one, never a song twice."""
    from mertsearch.catalog import Catalog
    from mertsearch.players.mpd import MpdRadio, parse_address
    from mertsearch.search.options import SearchOptions

    options = SearchOptions.parse(
        filter_,
        min_duration=min_duration,
        max_duration=max_duration,
        min_year=min_year,
        max_year=max_year,
        min_similarity=min_similarity,
        no_repeat_artist=no_repeat_artist,
        no_repeat_album=no_repeat_album,
        shuffle=shuffle,
        seed=seed,
    )
    address = parse_address(mpd)
    # A service manager stops with SIGTERM: end as Ctrl-C does, disconnected, with exit status 0.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    radio = None
    try:
        with Catalog.open(catalog, mmap=True) as cat:
            radio = MpdRadio(cat, address, music_dir=music_dir, ahead=ahead, options=options, report=_say)
            radio.run()
    except KeyboardInterrupt:
        out.print("stopped", highlight=False)
    finally:
        if radio is not None:
            radio.close()
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    out.print(line, highlight=False, soft_wrap=True)
    out.file.flush()  # each line as it happens, also into a pipe or a service's journal


def _interrupt(_signal, _frame) -> None:
    raise KeyboardInterrupt
