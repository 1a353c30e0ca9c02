"""`radio` and `path`: the next tracks after a listening history, and a song path between two tracks."""

from __future__ import annotations

from typing import Annotated

import typer

from mertsearch.cli.common import DIVERSITY, QUEUE, CatalogOpt, KOpt, app, friendly
from mertsearch.cli.queries import (
    CombineOpt,
    ExcludeOpt,
    FilterOpt,
    M3uOpt,
    MaxDurationOpt,
    MaxYearOpt,
    MinDurationOpt,
    MinScoreOpt,
    MinSimilarityOpt,
    MinYearOpt,
    PerAlbumOpt,
    PerArtistOpt,
    ResultsJsonOpt,
    SeedOpt,
    ShuffleOpt,
    _deliver,
    queue_options,
)
from mertsearch.cli.results import WideOpt


@app.command()
@friendly
def radio(
    history: Annotated[
        list[str], typer.Argument(help="What was played, oldest first: track ids or paths of files in the catalog.")
    ],
    catalog: CatalogOpt,
    k: KOpt = 10,
    filter_: FilterOpt = None,
    min_duration: MinDurationOpt = None,
    max_duration: MaxDurationOpt = None,
    min_year: MinYearOpt = None,
    max_year: MaxYearOpt = None,
    per_artist: Annotated[
        int | None,
        typer.Option(help="At most this many results per artist (default: 1).", min=1, rich_help_panel=DIVERSITY),
    ] = None,
    per_album: PerAlbumOpt = None,
    min_score: MinScoreOpt = None,
    min_similarity: MinSimilarityOpt = None,
    exclude: ExcludeOpt = None,
    no_repeat_artist: Annotated[
        int | None,
        typer.Option(
            help="Leave out the artists of the history's last N tracks (default: 3).", min=0, rich_help_panel=QUEUE
        ),
    ] = None,
    no_repeat_album: Annotated[
        int | None,
        typer.Option(
            help="Leave out the albums of the history's last N tracks (default: 5).", min=0, rich_help_panel=QUEUE
        ),
    ] = None,
    shuffle: ShuffleOpt = 0.0,
    seed: SeedOpt = None,
    combine: CombineOpt = "agreement",
    m3u: M3uOpt = None,
    wide: WideOpt = False,
    as_json: ResultsJsonOpt = False,
) -> None:
    """The next tracks after a listening history.

    Like its last 3 tracks, none of the history, no recent artist."""
    from mertsearch.catalog import Catalog
    from mertsearch.search.options import SearchOptions

    options = SearchOptions.parse(
        filter_,
        min_duration=min_duration,
        max_duration=max_duration,
        min_year=min_year,
        max_year=max_year,
        k=k,
        per_artist=per_artist,
        per_album=per_album,
        min_score=min_score,
        min_similarity=min_similarity,
        **queue_options(
            exclude=exclude,
            no_repeat_artist=no_repeat_artist,
            no_repeat_album=no_repeat_album,
            shuffle=shuffle,
            seed=seed,
            combine=combine,
        ),
    )
    with Catalog.open(catalog, mmap=True) as cat:
        results = cat.radio(history, options)
    _deliver(results, as_json, m3u, wide=wide)


@app.command()
@friendly
def path(
    start: Annotated[str, typer.Argument(help="The first track: an id or the path of a file in the catalog.")],
    end: Annotated[str, typer.Argument(help="The last track.")],
    catalog: CatalogOpt,
    count: Annotated[int, typer.Option("--count", "-n", help="Tracks in the path, both ends included.", min=2)] = 10,
    filter_: FilterOpt = None,
    min_duration: MinDurationOpt = None,
    max_duration: MaxDurationOpt = None,
    min_year: MinYearOpt = None,
    max_year: MaxYearOpt = None,
    per_artist: PerArtistOpt = None,
    per_album: PerAlbumOpt = None,
    exclude: ExcludeOpt = None,
    no_repeat_artist: Annotated[
        int | None,
        typer.Option(
            help="No step shares the artist of the N tracks before it (--exclude ones first).",
            min=0,
            rich_help_panel=QUEUE,
        ),
    ] = None,
    no_repeat_album: Annotated[
        int | None,
        typer.Option(help="No step shares the album of the N tracks before it.", min=0, rich_help_panel=QUEUE),
    ] = None,
    m3u: M3uOpt = None,
    wide: WideOpt = False,
    as_json: ResultsJsonOpt = False,
) -> None:
    """A song path: COUNT tracks from START to END.

    Exactly COUNT tracks, START and END included, each close to the last, moving steadily towards END."""
    from mertsearch.catalog import Catalog
    from mertsearch.search.options import SearchOptions

    options = SearchOptions.parse(
        filter_,
        min_duration=min_duration,
        max_duration=max_duration,
        min_year=min_year,
        max_year=max_year,
        per_artist=per_artist,
        per_album=per_album,
        exclude=tuple(exclude or ()),
        no_repeat_artist=no_repeat_artist,
        no_repeat_album=no_repeat_album,
    )
    with Catalog.open(catalog, mmap=True) as cat:
        results = cat.path(start, end, count, options)
    _deliver(results, as_json, m3u, wide=wide, steps=True)
