"""`search`, `similar` and `embed`: what is like a clip or a track."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mertsearch.cli.common import (
    DIVERSITY,
    FILTERS,
    MODEL,
    OUTPUT,
    QUEUE,
    CatalogOpt,
    DeviceOpt,
    JsonOpt,
    KOpt,
    LayerOpt,
    LayersOpt,
    PrecisionOpt,
    WeightsOpt,
    app,
    err,
    friendly,
    out,
    print_json,
)
from mertsearch.cli.results import WideOpt, show_results
from mertsearch.errors import InvalidArgumentError

FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Only tracks with this tag: artist=NAME, album=, genre=, year=, path=PREFIX (repeatable).",
        rich_help_panel=FILTERS,
    ),
]
MinDurationOpt = Annotated[
    float | None, typer.Option(help="Only tracks at least this many seconds long.", rich_help_panel=FILTERS)
]
MaxDurationOpt = Annotated[
    float | None, typer.Option(help="Only tracks at most this many seconds long.", rich_help_panel=FILTERS)
]
MinYearOpt = Annotated[int | None, typer.Option(help="Only tracks from this year on.", rich_help_panel=FILTERS)]
MaxYearOpt = Annotated[int | None, typer.Option(help="Only tracks up to this year.", rich_help_panel=FILTERS)]
MinScoreOpt = Annotated[
    float | None, typer.Option(help="Leave out results scoring below this.", rich_help_panel=FILTERS)
]
MinSimilarityOpt = Annotated[
    float | None,
    typer.Option(
        help="Leave out results less similar than this (0.5: a typical pair; 1: the same recording).",
        min=0.0,
        max=1.0,
        rich_help_panel=FILTERS,
    ),
]
PerArtistOpt = Annotated[
    int | None, typer.Option(help="At most this many results per artist.", min=1, rich_help_panel=DIVERSITY)
]
PerAlbumOpt = Annotated[
    int | None, typer.Option(help="At most this many results per album.", min=1, rich_help_panel=DIVERSITY)
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        help="Never return this track (id or path) nor another file of it: what was played (repeatable, oldest first).",
        rich_help_panel=QUEUE,
    ),
]
NoRepeatArtistOpt = Annotated[
    int | None,
    typer.Option(help="Leave out the artists of the last N --exclude tracks.", min=0, rich_help_panel=QUEUE),
]
NoRepeatAlbumOpt = Annotated[
    int | None,
    typer.Option(help="Leave out the albums of the last N --exclude tracks.", min=0, rich_help_panel=QUEUE),
]
ShuffleOpt = Annotated[
    float,
    typer.Option(
        help="0: the ranking as it is; T > 0: draw from the best 4k, weighted by exp(similarity / T) "
        "(0.05 stays close to the ranking, 0.5 mixes widely).",
        min=0.0,
        rich_help_panel=QUEUE,
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option(help="Seed of --shuffle's draws (default: new draws each time).", min=0, rich_help_panel=QUEUE),
]
CombineOpt = Annotated[
    str,
    typer.Option(
        help="How several seeds combine: 'agreement' (tracks near several seeds first) or 'average' "
        "(their mean vector).",
        rich_help_panel=QUEUE,
    ),
]
M3uOpt = Annotated[
    Path | None, typer.Option("--m3u", help="Also write the results as an M3U playlist.", rich_help_panel=OUTPUT)
]
ResultsJsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (for scripts).", rich_help_panel=OUTPUT)
]


def queue_options(
    *,
    exclude: list[str] | None,
    no_repeat_artist: int | None,
    no_repeat_album: int | None,
    shuffle: float,
    seed: int | None,
    combine: str,
) -> dict:
    """SearchOptions' fields for continuing a queue, as the commands take them."""
    return {
        "exclude": tuple(exclude or ()),
        "no_repeat_artist": no_repeat_artist,
        "no_repeat_album": no_repeat_album,
        "shuffle": shuffle,
        "seed": seed,
        "combine": combine,
    }


def _deliver(results, as_json: bool, m3u: Path | None, *, wide: bool = False, steps: bool = False) -> None:
    if m3u is not None:
        from mertsearch.search.playlist import write_m3u

        write_m3u(results, m3u)
    show_results(results, as_json, steps=steps, wide=wide)


@app.command()
@friendly
def search(
    catalog: CatalogOpt,
    clip: Annotated[Path | None, typer.Argument(help="Audio file to search with (optional with --text).")] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help='Describe the music in words ("slow sad piano with rain"; about 100 languages), in a catalog '
            "indexed with --text. With a clip: the clip's results, ranked again by the words too.",
        ),
    ] = None,
    k: KOpt = 10,
    start: Annotated[float | None, typer.Option(help="Use the clip from this second.", min=0)] = None,
    end: Annotated[float | None, typer.Option(help="Use the clip up to this second.", min=0)] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="'segments': match the clip's windows against every stored window (finds a clip inside a "
            "long track); 'tracks': compare whole-track vectors."
        ),
    ] = "segments",
    filter_: FilterOpt = None,
    min_duration: MinDurationOpt = None,
    max_duration: MaxDurationOpt = None,
    min_year: MinYearOpt = None,
    max_year: MaxYearOpt = None,
    per_artist: PerArtistOpt = None,
    per_album: PerAlbumOpt = None,
    min_score: MinScoreOpt = None,
    min_similarity: MinSimilarityOpt = None,
    m3u: M3uOpt = None,
    wide: WideOpt = False,
    as_json: ResultsJsonOpt = False,
    model: WeightsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Find the tracks most like an audio clip, or words (--text)."""
    from mertsearch.catalog import Catalog
    from mertsearch.search.options import SearchOptions

    if clip is None and text is None:
        raise InvalidArgumentError('give an audio clip to search with, or --text "words"')

    options = SearchOptions.parse(
        filter_,
        min_duration=min_duration,
        max_duration=max_duration,
        min_year=min_year,
        max_year=max_year,
        k=k,
        mode=None if text is not None and clip is None else mode,
        per_artist=per_artist,
        per_album=per_album,
        min_score=min_score,
        min_similarity=min_similarity,
    )
    with Catalog.open(catalog, model=model, device=device, precision=precision, mmap=True) as cat:
        if text is not None:
            results = cat.search_text(text, options, clip=clip, start=start, end=end)
        else:
            results = cat.search(clip, options, start=start, end=end)
        if cat.sampled_note:
            err.print(f"note: {cat.sampled_note}", soft_wrap=True)
    _deliver(results, as_json, m3u, wide=wide)


@app.command()
@friendly
def similar(
    tracks: Annotated[
        list[str], typer.Argument(help="Track ids or paths of files in the catalog; several seeds combine.")
    ],
    catalog: CatalogOpt,
    k: KOpt = 10,
    mode: Annotated[str, typer.Option(help="'tracks' (whole-track vectors) or 'segments' (windows).")] = "tracks",
    filter_: FilterOpt = None,
    min_duration: MinDurationOpt = None,
    max_duration: MaxDurationOpt = None,
    min_year: MinYearOpt = None,
    max_year: MaxYearOpt = None,
    per_artist: PerArtistOpt = None,
    per_album: PerAlbumOpt = None,
    exclude_seed_artist: Annotated[
        bool, typer.Option("--exclude-seed-artist", help="Leave out the seeds' artists.", rich_help_panel=DIVERSITY)
    ] = False,
    min_score: MinScoreOpt = None,
    min_similarity: MinSimilarityOpt = None,
    exclude: ExcludeOpt = None,
    no_repeat_artist: NoRepeatArtistOpt = None,
    no_repeat_album: NoRepeatAlbumOpt = None,
    shuffle: ShuffleOpt = 0.0,
    seed: SeedOpt = None,
    combine: CombineOpt = "agreement",
    m3u: M3uOpt = None,
    wide: WideOpt = False,
    as_json: ResultsJsonOpt = False,
) -> None:
    """Find the tracks most like tracks of the catalog.

    Several seeds combine; the seeds and other files of their recordings are left out."""
    from mertsearch.catalog import Catalog
    from mertsearch.search.options import SearchOptions

    options = SearchOptions.parse(
        filter_,
        min_duration=min_duration,
        max_duration=max_duration,
        min_year=min_year,
        max_year=max_year,
        k=k,
        mode=mode,
        per_artist=per_artist,
        per_album=per_album,
        exclude_seed_artist=exclude_seed_artist,
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
        results = cat.similar(tracks, options)
    _deliver(results, as_json, m3u, wide=wide)


@app.command()
@friendly
def embed(
    clip: Annotated[Path, typer.Argument(help="Audio file to embed.")],
    model: Annotated[
        str, typer.Option(help="Registry name, hub repo id, or local checkpoint directory.", rich_help_panel=MODEL)
    ] = "mert-v1-95m",
    layer: LayerOpt = None,
    layers: LayersOpt = None,
    revision: Annotated[
        str | None, typer.Option(help="Hub revision (registry models are pinned).", rich_help_panel=MODEL)
    ] = None,
    hop: Annotated[
        float | None, typer.Option(help="Seconds between window starts (default: the window).", rich_help_panel=MODEL)
    ] = None,
    start: Annotated[float | None, typer.Option(help="Use the clip from this second.", min=0)] = None,
    end: Annotated[float | None, typer.Option(help="Use the clip up to this second.", min=0)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also save the vector as .npy.")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the vector of an audio file (no catalog needed).

    The pooled, L2-normalised vector of the layers asked for."""
    import numpy as np

    from mertsearch.catalog import embed as embed_clip
    from mertsearch.encoder.checkpoint import default_layer, resolve_checkpoint
    from mertsearch.settings import resolve_layers

    if layer is not None and layers is not None:
        raise InvalidArgumentError("give --layer or --layers, not both")
    checkpoint = resolve_checkpoint(model, revision=revision)
    asked = layers if layers is not None else layer
    chosen = resolve_layers(default_layer(checkpoint) if asked is None else asked, checkpoint.num_layers())
    result = embed_clip(
        clip,
        model=model,
        layers=chosen,
        revision=revision,
        hop=hop,
        start=start,
        end=end,
        device=device,
        precision=precision,
    )
    if output is not None:
        np.save(output, result.vector)
    if as_json:
        print_json(
            {
                "model": model,
                "layer": chosen[0] if len(chosen) == 1 else None,
                "layers": chosen,
                "dim": int(result.vector.shape[0]),
                "windows": len(result.window_vectors),
                "duration": result.duration,
                "vector": [float(v) for v in result.vector],
            }
        )
        return
    head = ", ".join(f"{v:+.4f}" for v in result.vector[:6])
    out.print(
        f"{clip}: {result.duration:.1f} s, {len(result.window_vectors)} windows, layers {chosen}, "
        f"dim {result.vector.shape[0]}: [{head}, ...]" + (f" (saved to {output})" if output else ""),
        highlight=False,
    )
