"""The mertsearch command line: thin wrappers over the Python API, and its one error boundary."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mertsearch import __version__
from mertsearch.errors import InvalidArgumentError, MertSearchError

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
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        help="Model arithmetic: auto (bf16 only where this machine computes it natively, faster, and within "
        "cosine 0.9999 of fp32; else fp32), fp32, bf16 or fp16 (the last two trade accuracy for speed). "
        "Default: $MERTSEARCH_PRECISION, else auto.",
        show_default=False,
    ),
]


def _friendly(command: Callable) -> Callable:
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


def _print_json(document: dict) -> None:
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


@app.command()
@_friendly
def index(
    paths: Annotated[list[Path], typer.Argument(help="Audio files or folders (searched recursively).")],
    catalog: CatalogOpt,
    model: Annotated[
        str | None,
        typer.Option(
            help="Registry name (mert-v1-95m), hub repo id, or local checkpoint directory. "
            "New catalogs default to mert-v1-95m."
        ),
    ] = None,
    layer: LayerOpt = None,
    layers: LayersOpt = None,
    keep_layers: Annotated[
        str | None,
        typer.Option(
            "--keep-layers",
            help="'all': also store every layer's vectors (one pass of the whole model), so `reindex` and "
            "`tune-layer` can switch and compare layers later without the model.",
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision (registry models are pinned).")] = None,
    hop: Annotated[
        float | None, typer.Option(help="Seconds between window starts (default: the window, 5 s for MERT).")
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            help="Embed only this many seconds of each track, in windows spread evenly over it (30: six 5 s "
            "windows): many times faster for a big library; `similar` works as usual, a clip finds only "
            "the sampled parts. Set when the catalog is made.",
            min=1,
        ),
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="Try again files that failed before and did not change.")] = False,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="SQLAlchemy URL of a new catalog's metadata database, e.g. postgresql+psycopg://user@host/dbname "
            "(default: $MERTSEARCH_DATABASE, else SQLite in the catalog). Recorded without its password: give "
            "that through PGPASSWORD or ~/.pgpass. Later commands find the database in the catalog.",
        ),
    ] = None,
    wait: WaitOpt = 0.0,
    batch_size: Annotated[
        int | None, typer.Option(help="Windows per model call (default: 32 on a GPU, 1 on a CPU).", min=1)
    ] = None,
    decoders: Annotated[
        int | None,
        typer.Option(
            help="Worker processes decoding files while the model runs (default: one per CPU core but one); "
            "0 decodes in the main process.",
            min=0,
        ),
    ] = None,
    decode_timeout: Annotated[
        float, typer.Option(help="Seconds a decoder may go silent before its file is failed as hung.", min=1)
    ] = 120.0,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    executor: Annotated[
        str,
        typer.Option(
            help="'local': decoder processes and the model on this machine; 'ray': decode and embed on a Ray "
            "cluster (pip install 'mertsearch\\[ray]'), storing the results here.",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="With --executor ray: the cluster's address (default: RAY_ADDRESS, else a local Ray)."),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(help="With --executor ray: embedding actors (default: one per GPU, else one).", min=1),
    ] = None,
    prune_empty: Annotated[
        bool,
        typer.Option(
            "--prune-empty",
            help="Also forget the tracks of a folder given here that holds no audio file at all (by default "
            "such a folder is taken for a disk that is not mounted, and nothing under it is removed).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index audio files: add new ones, re-embed changed ones, skip unchanged ones, forget gone ones."""
    from mertsearch.catalog import Catalog
    from mertsearch.config import RaySettings

    if keep_layers not in (None, "all", "none"):
        raise InvalidArgumentError(f"--keep-layers takes 'all' (or 'none'), got {keep_layers!r}")
    if executor not in ("local", "ray"):
        raise InvalidArgumentError(f"--executor takes 'local' or 'ray', got {executor!r}")
    if executor == "local" and (address is not None or actors is not None):
        raise InvalidArgumentError("--address and --actors go with --executor ray")
    with Catalog.open(
        catalog,
        model=model,
        layer=layer,
        layers=layers,
        keep_layers=keep_layers == "all",
        revision=revision,
        hop=hop,
        sample=sample,
        create=True,
        device=device,
        batch_size=batch_size,
        precision=precision,
        database=database,
    ) as cat:
        cat.wait_s = wait
        options = {
            "retry_failed": retry_failed,
            "decoders": decoders,
            "decode_timeout_s": decode_timeout,
            "prune_empty": prune_empty,
        }
        if executor == "ray":
            options["ray"] = RaySettings(address=address, actors=actors)
        report = cat.index_paths(paths, **options) if as_json else _index_with_progress(cat, paths, options)
        document = {**report.as_dict(), "tracks": cat.store.count("tracks"), "catalog": str(cat.directory)}
    if as_json:
        _print_json(document)
        return
    out.print(
        f"{document['added']} added, {document['updated']} updated, {document['unchanged']} unchanged, "
        f"{len(document['failed'])} failed, {document['skipped_failed']} skipped (failed before), "
        f"{document['removed']} removed (files gone); "
        f"{document['tracks']} tracks in {document['catalog']}",
        highlight=False,
    )
    if document["audio_seconds"]:
        out.print(
            f"{document['audio_hours']:.2f} h of audio in {document['elapsed']:.0f} s "
            f"({document['audio_seconds'] / max(document['elapsed'], 1e-9):.1f}x real time) on {document['device']}, "
            f"{document['precision']}"
            + (f", {document['decoders']} decoder(s)" if document["executor"] == "local" else "")
            + (f"; {document['from_shards']} track(s) from an earlier run's shards" if document["from_shards"] else ""),
            highlight=False,
        )
    for failed in document["failed"]:
        err.print(f"  failed: {failed['path']}: {failed['reason']}", highlight=False, soft_wrap=True)
    for folder in document["empty_folders"]:
        kept = "its tracks were removed (--prune-empty)" if prune_empty else "nothing under it was removed"
        err.print(
            f"  no audio files in {folder} (a disk not mounted?): {kept}"
            + ("" if prune_empty else "; --prune-empty removes them"),
            highlight=False,
            soft_wrap=True,
        )


def _index_with_progress(cat, paths: list[Path], options: dict):
    progress = Progress(
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[hours]:.2f} h audio"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )
    task = progress.add_task("index", total=None, hours=0.0, rate="")

    def update(event) -> None:
        if not progress.live.is_started:  # shown from the first file on, so early errors stay one line
            progress.start()
        speed = event.audio_seconds / event.elapsed if event.elapsed > 0 else 0.0
        progress.update(
            task,
            total=event.total,
            completed=event.done,
            hours=event.audio_seconds / 3600,
            rate=f"{speed:.1f}x real time",
        )

    try:
        return cat.index_paths(paths, progress=update, **options)
    finally:
        progress.stop()


def _show_results(results, as_json: bool) -> None:
    if as_json:
        _print_json({"results": [r.as_dict() for r in results]})
        return
    if not results:
        out.print("no results")
        return
    table = Table(box=None, header_style="bold")
    for column in ("#", "score", "id", "artist", "title", "album", "match", "in query", "path"):
        table.add_column(column, overflow="fold")
    for rank, r in enumerate(results, start=1):
        table.add_row(
            str(rank),
            f"{r.score:.3f}",
            str(r.track_id),
            r.artist or "",
            r.title or "",
            r.album or "",
            f"{_clock(r.match.start)}-{_clock(r.match.end)}",
            f"{_clock(r.query.start)}-{_clock(r.query.end)}",
            r.path + "".join(f"\n  = {alternate}" for alternate in r.alternates),
        )
    out.print(table)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter", help="Only tracks with this tag: artist=NAME, album=, genre=, year=, path=PREFIX (repeatable)."
    ),
]
MinDurationOpt = Annotated[float | None, typer.Option(help="Only tracks at least this many seconds long.")]
MaxDurationOpt = Annotated[float | None, typer.Option(help="Only tracks at most this many seconds long.")]
MinYearOpt = Annotated[int | None, typer.Option(help="Only tracks from this year on.")]
MaxYearOpt = Annotated[int | None, typer.Option(help="Only tracks up to this year.")]
PerArtistOpt = Annotated[int | None, typer.Option(help="At most this many results per artist.", min=1)]
PerAlbumOpt = Annotated[int | None, typer.Option(help="At most this many results per album.", min=1)]
MinScoreOpt = Annotated[float | None, typer.Option(help="Leave out results scoring below this.")]
M3uOpt = Annotated[Path | None, typer.Option("--m3u", help="Also write the results as an M3U playlist.")]


def _deliver(results, as_json: bool, m3u: Path | None) -> None:
    if m3u is not None:
        from mertsearch.search.playlist import write_m3u

        write_m3u(results, m3u)
    _show_results(results, as_json)


@app.command()
@_friendly
def search(
    clip: Annotated[Path, typer.Argument(help="Audio file to search with.")],
    catalog: CatalogOpt,
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
    m3u: M3uOpt = None,
    model: Annotated[
        str | None, typer.Option(help="Where the catalog's model weights are now (checked by hash).")
    ] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the catalog tracks most similar to an audio clip, and where they match."""
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
        min_score=min_score,
    )
    with Catalog.open(catalog, model=model, device=device, precision=precision, mmap=True) as cat:
        results = cat.search(clip, options, start=start, end=end)
        if cat.sampled_note:
            err.print(f"note: {cat.sampled_note}", soft_wrap=True)
    _deliver(results, as_json, m3u)


@app.command()
@_friendly
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
    exclude_seed_artist: Annotated[bool, typer.Option(help="Leave out the seeds' artists.")] = False,
    min_score: MinScoreOpt = None,
    m3u: M3uOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the tracks most similar to ones already in the catalog (the seeds themselves are left out)."""
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
    )
    with Catalog.open(catalog, mmap=True) as cat:
        results = cat.similar(tracks, options)
    _deliver(results, as_json, m3u)


@app.command()
@_friendly
def embed(
    clip: Annotated[Path, typer.Argument(help="Audio file to embed.")],
    model: Annotated[
        str, typer.Option(help="Registry name, hub repo id, or local checkpoint directory.")
    ] = "mert-v1-95m",
    layer: LayerOpt = None,
    layers: LayersOpt = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision (registry models are pinned).")] = None,
    hop: Annotated[float | None, typer.Option(help="Seconds between window starts (default: the window).")] = None,
    start: Annotated[float | None, typer.Option(help="Use the clip from this second.", min=0)] = None,
    end: Annotated[float | None, typer.Option(help="Use the clip up to this second.", min=0)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also save the vector as .npy.")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the pooled, L2-normalised vector of an audio file (no catalog needed)."""
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
        _print_json(
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


@app.command()
@_friendly
def reindex(
    catalog: CatalogOpt,
    layer: LayerOpt = None,
    layers: LayersOpt = None,
    transform: Annotated[
        str | None,
        typer.Option(
            help="'center' (subtract the catalog's mean vector), 'whiten' (also decorrelate) or 'none'; "
            "fitted on the catalog and applied to queries the same way."
        ),
    ] = None,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Switch the searched layer(s) or the centering from stored vectors, in seconds, without the model."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        report = cat.reindex(layer=layer, layers=layers, transform=transform)
    if as_json:
        _print_json(report)
        return
    before, after = report["scores_before"], report["scores_after"]
    out.print(
        f"searching layers {report['layers']} with transform '{report['transform']}' over {report['tracks']} "
        f"tracks ({report['tracks_rewritten']} rewritten, {report['seconds']:.1f} s). Scores between random "
        f"pairs: mean {before['mean']} sd {before['std']} before, mean {after['mean']} sd {after['std']} now",
        highlight=False,
    )


@app.command("tune-layer")
@_friendly
def tune_layer(
    catalog: CatalogOpt,
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with a header: 'path' (or 'track_id') and 'label'. Default: each track's folder name."),
    ] = None,
    exclude_same_artist: Annotated[
        bool, typer.Option(help="Leave a query's own artist out of its ranking (artist effects inflate scores).")
    ] = False,
    exclude_same_album: Annotated[
        bool, typer.Option(help="Leave a query's own album out of its ranking (album effects inflate scores).")
    ] = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Precision at this rank.", min=1)] = 10,
    plot: Annotated[
        Path | None, typer.Option(help="Where to write the PNG plot (default: DIR/tune-layer.png).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare every stored layer on label retrieval (precision@k, mAP), raw and centered; recommend one."""
    from mertsearch.catalog import Catalog
    from mertsearch.evaluation.metrics import read_labels
    from mertsearch.evaluation.report import write_plot

    with Catalog.open(catalog) as cat:
        report = cat.tune_layers(
            read_labels(labels) if labels else None,
            exclude_same_artist=exclude_same_artist,
            exclude_same_album=exclude_same_album,
            k=k,
        )
        destination = plot or cat.directory / "tune-layer.png"
    write_plot(report, destination)
    report["plot"] = str(destination)
    if as_json:
        _print_json(report)
        return
    table = Table(box=None, header_style="bold")
    for column in ("layer", f"P@{k}", "mAP", f"P@{k} centered", "mAP centered", "score sd", "sd centered"):
        table.add_column(column, justify="right")
    for row in report["layers"]:
        mark = " *" if row["layer"] == report["recommended_layer"] else ""
        table.add_row(
            f"{row['layer']}{mark}",
            f"{row['precision_at_k']:.3f}",
            f"{row['map']:.3f}",
            f"{row['precision_at_k_centered']:.3f}",
            f"{row['map_centered']:.3f}",
            f"{row['scores']['std']:.3f}",
            f"{row['scores_centered']['std']:.3f}",
        )
    out.print(table)
    out.print(
        f"{report['queries']} queries over {report['tracks']} tracks, {report['labels']} labels. "
        f"Recommended layer: {report['recommended_layer']} (searching {report['searched_layers']} now; "
        f"switch with `mertsearch reindex --catalog {catalog} --layer N`). Plot: {destination}",
        highlight=False,
    )


@app.command(name="eval")
@_friendly
def evaluate(
    catalog: CatalogOpt,
    excerpts: Annotated[
        int, typer.Option(help="Random excerpts to identify (each under every degradation).", min=1)
    ] = 50,
    seconds: Annotated[float, typer.Option(help="Length of each excerpt.", min=1)] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of every random choice: same seed, same numbers.")] = 0,
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with a header: 'path' (or 'track_id') and 'label'. Default: each track's folder name."),
    ] = None,
    exclude_same_artist: Annotated[
        bool, typer.Option(help="Leave a query's own artist out of label retrieval (artist effects inflate scores).")
    ] = False,
    exclude_same_album: Annotated[
        bool, typer.Option(help="Leave a query's own album out of label retrieval (album effects inflate scores).")
    ] = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Recall and precision at this rank.", min=1)] = 10,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for eval.md, eval.json and the plots (default: DIR/eval).")
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also index the same files with the spectral baseline (in a temporary catalog; decodes every file "
            "again) and answer the same excerpts with it: a reference row."
        ),
    ] = True,
    model: Annotated[
        str | None, typer.Option(help="Where the catalog's model weights are now (checked by hash).")
    ] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure how good the search is on this catalog: excerpts found (clean and degraded), label
    retrieval and (with every layer kept) excerpts found per stored layer, and the spread of scores,
    raw and centered, of random pairs and true pairs. Writes a Markdown report with plots."""
    from mertsearch.catalog import Catalog
    from mertsearch.evaluation.metrics import read_labels
    from mertsearch.evaluation.report import write_report

    with Catalog.open(catalog, model=model, device=device, precision=precision, mmap=True) as cat:
        report = cat.evaluate(
            excerpts=excerpts,
            seconds=seconds,
            seed=seed,
            k=k,
            labels=read_labels(labels) if labels else None,
            exclude_same_artist=exclude_same_artist,
            exclude_same_album=exclude_same_album,
            baseline=baseline,
        )
        report["files"] = write_report(report, out_dir or cat.directory / "eval")
    if as_json:
        _print_json(report)
        return
    ident = report["identification"]
    table = Table(box=None, header_style="bold")
    reference = report.get("baseline")
    columns = ["degradation", "recall@1", f"recall@{k}", "position error"]
    columns += ["spectral recall@1", f"spectral recall@{k}"] if reference else []
    for column in columns:
        table.add_column(column, justify="left" if column == "degradation" else "right")
    for name, row in ident["degradations"].items():
        error = "-" if row["median_position_error_s"] is None else f"{row['median_position_error_s']:.2f} s"
        cells = [name, f"{row['recall_at_1']:.2f}", f"{row[f'recall_at_{k}']:.2f}", error]
        if reference:
            other = reference["degradations"][name]
            cells += [f"{other['recall_at_1']:.2f}", f"{other[f'recall_at_{k}']:.2f}"]
        table.add_row(*cells)
    out.print(table)
    for row in ident.get("layers", []):
        recalls = [cells["recall_at_1"] for cells in row["degradations"].values()]
        out.print(
            f"layer {row['layer']}: recall@1 clean {row['degradations']['clean']['recall_at_1']:.2f}, "
            f"mean over degradations {sum(recalls) / len(recalls):.2f}",
            highlight=False,
        )
    out.print(f"{ident['excerpts']} excerpts of {seconds:g} s. Report: {report['files']['markdown']}", highlight=False)


models_app = typer.Typer(help="The models mertsearch knows by name; download one ahead of time.", no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the known models: hub repo, pinned revision, rates, size, context, licence, default layer."""
    if ctx.invoked_subcommand is not None:
        return
    from mertsearch.encoder.registry import MODELS

    if as_json:
        _print_json({"models": [info.as_dict() for info in MODELS.values()]})
        return
    table = Table(box=None, header_style="bold")
    for column in (
        "name",
        "hub repo",
        "revision",
        "rate",
        "frames/s",
        "layers x dim",
        "context",
        "params",
        "default layer",
        "licence",
    ):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for info in MODELS.values():
        table.add_row(
            info.name,
            info.repo_id,
            (info.revision or "main")[:12],
            f"{info.sample_rate // 1000} kHz",
            str(info.feature_rate),
            f"{info.num_layers} x {info.dim}",
            f"{info.context_s:g} s",
            info.params,
            str(info.default_layer),
            info.licence,
        )
    out.print(table)
    out.print(
        "Also built in: --model spectral, a weight-free baseline (log-mel, MFCC and chroma statistics per 5 s "
        "window, 190 dims) that needs no download and runs fast on a CPU.",
        highlight=False,
    )


@models_app.command("download")
@_friendly
def models_download(
    name: Annotated[str, typer.Argument(help="Registry name or hub repo id.")],
    revision: Annotated[str | None, typer.Option(help="Hub revision (registry models are pinned).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model into the Hugging Face cache now (only the files needed), so indexing works offline later."""
    from mertsearch.encoder.checkpoint import resolve_checkpoint

    checkpoint = resolve_checkpoint(name, revision=revision)
    document = {
        "model": name,
        "repo_id": checkpoint.repo_id,
        "revision": checkpoint.revision,
        "directory": str(checkpoint.directory),
        "weights_sha256": checkpoint.weights_sha256(),
    }
    if as_json:
        _print_json(document)
    else:
        out.print(
            f"{name} ({checkpoint.repo_id} at {checkpoint.revision}) is in {checkpoint.directory}", highlight=False
        )


@app.command()
@_friendly
def info(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """Show what a catalog holds and how it was built."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog, mmap=True) as cat:
        document = cat.info()
    if as_json:
        _print_json(document)
        return
    for key, value in document.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        out.print(Text.assemble((key, "bold"), f": {value}"), highlight=False)


@app.command()
@_friendly
def serve(
    catalog: CatalogOpt,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MERTSEARCH_TOKEN",
            help="Bearer token required on every API request (also read from MERTSEARCH_TOKEN); "
            "required when listening beyond loopback.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Origin allowed to call the API (repeatable).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, in MB.", min=0.01)] = 50.0,
    max_clip_seconds: Annotated[float, typer.Option(help="Longest clip searched, in seconds.", min=1)] = 600.0,
    model: Annotated[str | None, typer.Option(help="Where the catalog's model weights are now.")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Serve the HTTP API and the web page (open http://HOST:PORT/ in a browser)."""
    import uvicorn

    from mertsearch.api.app import Settings, create_app, is_loopback

    if not token and not is_loopback(host):
        raise InvalidArgumentError(f"listening on {host} (beyond loopback) needs a token: --token or MERTSEARCH_TOKEN")
    settings = Settings(
        catalog=catalog,
        token=token or None,
        cors_origins=cors_origin or [],
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_clip_seconds=max_clip_seconds,
        model=model,
        device=device,
        precision=precision,
    )
    err.print(f"serving {catalog} on http://{host}:{port}/ (API docs at /docs)", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
@_friendly
def duplicates(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """List the files that hold the same recording (other formats, bitrates, copies)."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        groups = cat.duplicates()
    if as_json:
        _print_json({"duplicates": groups})
        return
    for group in groups:
        out.print(Text.assemble((str(group["track_id"]), "bold"), f" {group['path']}"), highlight=False, soft_wrap=True)
        for alternate in group["alternates"]:
            out.print(f"  = {alternate['track_id']} {alternate['path']}", highlight=False, soft_wrap=True)
    if not groups:
        out.print("no duplicates")


@app.command()
@_friendly
def remove(
    tracks: Annotated[list[str], typer.Argument(help="Track ids or paths to take out of the catalog.")],
    catalog: CatalogOpt,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Take tracks out of the catalog (the files themselves are not touched)."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        removed = cat.remove(tracks)
    if as_json:
        _print_json({"removed": removed})
    else:
        out.print(f"removed {len(removed)} track(s): {', '.join(map(str, removed))}", highlight=False)


@app.command()
@_friendly
def rebuild(
    catalog: CatalogOpt,
    factory: Annotated[
        str | None,
        typer.Option(
            help="Index kind from now on: 'auto' (exact while small, IVF-SQ8 as it grows) or a FAISS factory "
            "string such as 'IVF4096,SQ8' or 'IDMap2,HNSW32' (HNSW cannot remove tracks)."
        ),
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            help="Build inverted files (IVF kinds) in shards of this many vectors, merged into a lists file on "
            "disk that searches map instead of reading (default: only when the codes exceed 512 MiB)."
        ),
    ] = None,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the search indexes from the stored vectors (no model needed)."""
    from mertsearch.catalog import Catalog

    started = time.monotonic()
    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        cat.rebuild_index(factory, shard_size=shard_size)
        document = {
            "tracks": len(cat.indexes.tracks),
            "windows": len(cat.indexes.windows),
            "kinds": {"tracks": cat.indexes.tracks.factory, "windows": cat.indexes.windows.factory},
        }
    document["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        _print_json(document)
    else:
        out.print(
            f"rebuilt the indexes of {document['tracks']} tracks ({document['kinds']['tracks']}) and "
            f"{document['windows']} windows ({document['kinds']['windows']}) in {document['seconds']:.1f} s",
            highlight=False,
        )


@app.command()
@_friendly
def verify(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """Check that the manifest, database, indexes and stored vectors agree; exit 1 on any problem."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        problems = cat.verify()
    if as_json:
        _print_json({"ok": not problems, "problems": problems})
    else:
        for problem in problems:
            err.print(f"problem: {problem}", highlight=False, soft_wrap=True)
        out.print("catalog is consistent" if not problems else f"{len(problems)} problem(s); try `mertsearch repair`")
    if problems:
        raise typer.Exit(1)


@app.command()
@_friendly
def repair(catalog: CatalogOpt, wait: WaitOpt = 0.0, as_json: JsonOpt = False) -> None:
    """Fix what can be fixed from the stored data (rebuilds the indexes), then verify again."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        done = cat.repair()
        remaining = cat.verify()
    if as_json:
        _print_json({"done": done, "problems": remaining})
    else:
        for line in done:
            out.print(line, highlight=False)
        for problem in remaining:
            err.print(f"still a problem: {problem}", highlight=False, soft_wrap=True)
    if remaining:
        raise typer.Exit(1)


@app.command()
@_friendly
def failures(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """List the files that could not be indexed, and why."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        rows = cat.failures()
    if as_json:
        _print_json({"failed": rows})
        return
    for row in rows:
        out.print(f"{row['path']}: {row['reason']}", highlight=False, soft_wrap=True)
    if not rows:
        out.print("no failures")


def main() -> None:
    # A file name that is not valid UTF-8 (held as surrogate escapes) is printed as \udcXX instead
    # of failing the command; inside --json output that is a valid JSON string escape.
    sys.stdout.reconfigure(errors="backslashreplace")
    sys.stderr.reconfigure(errors="backslashreplace")
    app()


if __name__ == "__main__":
    main()
