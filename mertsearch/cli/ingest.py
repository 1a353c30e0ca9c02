"""`mertsearch index`: add, re-embed and forget files, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mertsearch.cli.common import (
    MODEL,
    CatalogOpt,
    DeviceOpt,
    JsonOpt,
    LayerOpt,
    LayersOpt,
    PrecisionOpt,
    WaitOpt,
    app,
    err,
    friendly,
    out,
    print_json,
)
from mertsearch.errors import InvalidArgumentError

STORAGE, SPEED, RAY = "Storage", "Speed", "Ray cluster"


@app.command()
@friendly
def index(
    paths: Annotated[list[Path], typer.Argument(help="Audio files or folders (searched recursively).")],
    catalog: CatalogOpt,
    model: Annotated[
        str | None,
        typer.Option(
            help="Registry name, hub repo id, local checkpoint directory or 'spectral'. "
            "New catalogs default to mert-v1-95m.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    layer: LayerOpt = None,
    layers: LayersOpt = None,
    keep_layers: Annotated[
        str | None,
        typer.Option(
            "--keep-layers",
            help="'all': also store every layer's vectors, so that reindex and tune-layer can switch and "
            "compare layers later without the model.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Hub revision (registry models are pinned).", rich_help_panel=MODEL)
    ] = None,
    hop: Annotated[
        float | None,
        typer.Option(help="Seconds between window starts (default: the window, 5 s for MERT).", rich_help_panel=MODEL),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            help="Embed only this many seconds of each track, in windows spread over it (30: six 5 s windows): "
            "many times faster; a clip finds only the sampled parts. Set when the catalog is made.",
            min=1,
            rich_help_panel=MODEL,
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try again files that failed before and did not change.")
    ] = False,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="SQLAlchemy URL of a new catalog's metadata database, e.g. postgresql+psycopg://user@host/db "
            "(default: $MERTSEARCH_DATABASE, else SQLite in the catalog). Its password: in PGPASSWORD or "
            "~/.pgpass, never recorded.",
            rich_help_panel=STORAGE,
        ),
    ] = None,
    vector_store: Annotated[
        str | None,
        typer.Option(
            "--vector-store",
            help="Keep a new catalog's vectors in Milvus instead of FAISS files: milvus:///path/milvus.db "
            "(Milvus Lite) or http(s)://host:19530 (its token in $MERTSEARCH_MILVUS_TOKEN).",
            rich_help_panel=STORAGE,
        ),
    ] = None,
    wait: WaitOpt = 0.0,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Windows per model call (default: 32 on a GPU, 1 on a CPU).", min=1, rich_help_panel=SPEED),
    ] = None,
    decoders: Annotated[
        int | None,
        typer.Option(
            help="Processes decoding files while the model runs (default: one per CPU core but one; "
            "0: in this process).",
            min=0,
            rich_help_panel=SPEED,
        ),
    ] = None,
    decode_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a decoder may go silent before its file is failed as hung.", min=1, rich_help_panel=SPEED
        ),
    ] = 120.0,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    executor: Annotated[
        str,
        typer.Option(
            help="'local': decode and embed on this machine; 'ray': on a Ray cluster (pip install "
            "'mertsearch\\[ray]'), storing the results here.",
            rich_help_panel=RAY,
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: the cluster's address (default: RAY_ADDRESS, else a local Ray).",
            rich_help_panel=RAY,
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            help="With --executor ray: embedding actors (default: one per GPU, else one).", min=1, rich_help_panel=RAY
        ),
    ] = None,
    prune_empty: Annotated[
        bool,
        typer.Option(
            "--prune-empty",
            help="Also forget the tracks of a folder given that holds no audio file (by default taken for a "
            "disk not mounted, and kept).",
        ),
    ] = False,
    text: Annotated[
        bool,
        typer.Option(
            "--text",
            help="Also make each track's CLaMP 3 vector, for `search --text` (describe music in words). "
            "MERT-v1-95M catalogs only; an existing catalog embeds its tracks once more.",
            rich_help_panel=MODEL,
        ),
    ] = False,
    text_model: Annotated[
        Path | None,
        typer.Option(
            help="With --text: a local CLaMP 3 checkpoint directory (default: $MERTSEARCH_CLAMP3, else the hub's).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index audio files and folders into a catalog.

    Adds new files, embeds files whose audio changed again, stores new tags of retagged files
    without the model, keeps moved files' tracks, forgets gone ones; creates the catalog on first use."""
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
        vector_store=vector_store,
    ) as cat:
        cat.wait_s = wait
        if text_model is not None and not text:
            raise InvalidArgumentError("--text-model goes with --text")
        if text:
            cat.enable_text(None if text_model is None else str(text_model))
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
        print_json(document)
        return
    out.print(
        f"{document['added']} added, {document['updated']} updated, "
        f"{document['retagged']} retagged, {document['moved']} moved, {document['unchanged']} unchanged, "
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
