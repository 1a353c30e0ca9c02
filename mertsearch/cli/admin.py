"""The models known by name, and looking after a catalog: info, serve, duplicates, remove, rebuild,
verify, repair, failures."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mertsearch.cli.common import (
    CatalogOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    Typer,
    WaitOpt,
    WeightsOpt,
    app,
    err,
    friendly,
    out,
    print_json,
)
from mertsearch.cli.listings import show_duplicates, show_failures, show_info, show_models
from mertsearch.errors import InvalidArgumentError

SUBSONIC_PANEL, API = "Subsonic pass-through", "HTTP API"

models_app = Typer(help="The models known by name; download one ahead of time.", no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the known models.

    Hub repo, pinned revision, rates, size, context, licence, default layer."""
    if ctx.invoked_subcommand is not None:
        return
    from mertsearch.encoder.registry import MODELS

    if as_json:
        print_json({"models": [info.as_dict() for info in MODELS.values()]})
        return
    show_models(MODELS.values())
    out.print(
        "Also built in: --model spectral, a weight-free baseline (log-mel, MFCC and chroma statistics per 5 s "
        "window, 190 dims) that needs no download and runs fast on a CPU.",
        highlight=False,
    )


@models_app.command("download")
@friendly
def models_download(
    name: Annotated[str, typer.Argument(help="Registry name, hub repo id, or clamp3 (text search).")],
    revision: Annotated[str | None, typer.Option(help="Hub revision (registry models are pinned).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model into the Hugging Face cache now.

    Only the files needed, so that indexing works offline later."""
    from mertsearch.encoder.checkpoint import resolve_checkpoint

    if name.lower() in ("clamp3", "sander-wood/clamp3"):
        _download_clamp3(revision, as_json)
        return

    checkpoint = resolve_checkpoint(name, revision=revision)
    document = {
        "model": name,
        "repo_id": checkpoint.repo_id,
        "revision": checkpoint.revision,
        "directory": str(checkpoint.directory),
        "weights_sha256": checkpoint.weights_sha256(),
    }
    if as_json:
        print_json(document)
    else:
        out.print(
            f"{name} ({checkpoint.repo_id} at {checkpoint.revision}) is in {checkpoint.directory}", highlight=False
        )


def _download_clamp3(revision: str | None, as_json: bool) -> None:
    """CLaMP 3 (text search) into the Hugging Face cache: its checkpoint and the text model's files."""
    from mertsearch.encoder import clamp3
    from mertsearch.encoder.checkpoint import weights_file_sha256

    if revision is not None:
        raise InvalidArgumentError("CLaMP 3 is pinned: leave out --revision")
    weights, text = clamp3.download()
    document = {
        "model": "clamp3",
        "repo_id": clamp3.REPO_ID,
        "revision": weights.parent.name,
        "directory": str(weights.parent),
        "text_directory": str(text),
        "weights_sha256": weights_file_sha256(weights),
    }
    if as_json:
        print_json(document)
    else:
        out.print(f"clamp3 ({clamp3.REPO_ID} at {weights.parent.name}) is in {weights.parent}", highlight=False)


@app.command()
@friendly
def info(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """Show what a catalog holds and how it was built."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog, mmap=True) as cat:
        document = cat.info()
    if as_json:
        print_json(document)
        return
    show_info(document)


@app.command()
@friendly
def serve(
    catalog: CatalogOpt,
    host: Annotated[
        str, typer.Option(help="Address or name to listen on ('' or 0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MERTSEARCH_TOKEN",
            help="Bearer token required on every API request; required when listening beyond loopback.",
            rich_help_panel=API,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Origin allowed to call the API (repeatable).", rich_help_panel=API),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload accepted, in MB.", min=0.01, rich_help_panel=API)
    ] = 50.0,
    max_clip_seconds: Annotated[
        float, typer.Option(help="Longest clip searched, in seconds.", min=1, rich_help_panel=API)
    ] = 600.0,
    model: WeightsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    subsonic: Annotated[
        str | None,
        typer.Option(
            help="A Subsonic server (Navidrome, Gonic, Airsonic...) to pass /rest/* through to, adding "
            "OpenSubsonic sonicSimilarity from the catalog (docs/subsonic.md).",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = None,
    subsonic_user: Annotated[
        str | None,
        typer.Option(help="The Subsonic user whose library is matched to the catalog.", rich_help_panel=SUBSONIC_PANEL),
    ] = None,
    subsonic_password: Annotated[
        str | None,
        typer.Option(
            envvar="MERTSEARCH_SUBSONIC_PASSWORD",
            help="That user's password.",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = None,
    subsonic_root: Annotated[
        list[str] | None,
        typer.Option(
            "--subsonic-root",
            help="The server's music folder as the catalog's paths see it (repeatable); without it, songs' paths "
            "are matched as the ends of catalog paths.",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = None,
    subsonic_sync_s: Annotated[
        float,
        typer.Option(
            help="Seconds between checks of the server's songs (read again when changed).",
            min=10,
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = 900.0,
    no_instant_mix: Annotated[
        bool,
        typer.Option(
            "--no-instant-mix",
            help="Leave getSimilarSongs(2), players' Instant Mix, to the server.",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = False,
    no_index_new: Annotated[
        bool,
        typer.Option(
            "--no-index-new",
            help="Do not index the server's new songs found under a --subsonic-root.",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = False,
    subsonic_mixes: Annotated[
        bool,
        typer.Option(
            "--subsonic-mixes",
            help="Keep sonic mixes as playlists of --subsonic-user (recently played, starred songs).",
            rich_help_panel=SUBSONIC_PANEL,
        ),
    ] = False,
) -> None:
    """Serve the HTTP API and the web page.

    Open http://HOST:PORT/ in a browser. With --subsonic, also a Subsonic server's API at /rest/
    with sonic similarity added."""
    import uvicorn

    from mertsearch.api.app import Settings, create_app, is_loopback
    from mertsearch.subsonic import SubsonicSettings

    if not token and not is_loopback(host):
        where = host or "every interface"
        raise InvalidArgumentError(f"listening on {where} (beyond loopback) needs a token: --token or MERTSEARCH_TOKEN")
    settings = Settings(
        catalog=catalog,
        token=token or None,
        cors_origins=cors_origin or [],
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_clip_seconds=max_clip_seconds,
        model=model,
        device=device,
        precision=precision,
        subsonic=None
        if subsonic is None
        else SubsonicSettings(
            url=subsonic,
            user=subsonic_user or "",
            password=subsonic_password or "",
            roots=subsonic_root or [],
            sync_s=subsonic_sync_s,
            similar_songs=not no_instant_mix,
            index_new=not no_index_new,
            mixes=subsonic_mixes,
        ),
    )
    err.print(f"serving {catalog} on http://{host}:{port}/ (API docs at /docs)", highlight=False)
    if settings.subsonic:
        upstream = settings.subsonic.url
        err.print(f"passing Subsonic requests at /rest/ through to {upstream}", highlight=False, soft_wrap=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
@friendly
def duplicates(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """List the files that hold the same recording.

    Other formats, bitrates, copies: one file of each recording is its track, the others its
    alternates."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        groups = cat.duplicates()
    if as_json:
        print_json({"duplicates": groups})
        return
    show_duplicates(groups)


@app.command()
@friendly
def remove(
    tracks: Annotated[list[str], typer.Argument(help="Track ids or paths to take out of the catalog.")],
    catalog: CatalogOpt,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Take tracks out of the catalog (their files stay)."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        removed = cat.remove(tracks)
    if as_json:
        print_json({"removed": removed})
    else:
        out.print(f"removed {len(removed)} track(s): {', '.join(map(str, removed))}", highlight=False)


@app.command()
@friendly
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
    vector_store: Annotated[
        str | None,
        typer.Option(
            "--vector-store",
            help="Move the vectors: to Milvus (milvus:///path/milvus.db, or http(s)://host:19530 with its token in "
            "$MERTSEARCH_MILVUS_TOKEN), or back to FAISS files ('faiss'). The old store's are dropped once the new "
            "ones are built; restart running servers.",
        ),
    ] = None,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the search indexes from the stored vectors.

    No model needed; --factory changes the index kind, --vector-store moves the vectors."""
    from mertsearch.catalog import Catalog

    started = time.monotonic()
    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        cat.rebuild_index(factory, shard_size=shard_size, vector_store=vector_store)
        document = {
            "tracks": len(cat.indexes.tracks),
            "windows": len(cat.indexes.windows),
            "kinds": {"tracks": cat.indexes.tracks.factory, "windows": cat.indexes.windows.factory},
        }
    document["seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        print_json(document)
    else:
        out.print(
            f"rebuilt the indexes of {document['tracks']} tracks ({document['kinds']['tracks']}) and "
            f"{document['windows']} windows ({document['kinds']['windows']}) in {document['seconds']:.1f} s",
            highlight=False,
        )


@app.command()
@friendly
def verify(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """Check that manifest, database, indexes and vectors agree.

    Exits with 1 on any problem."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        problems = cat.verify()
    if as_json:
        print_json({"ok": not problems, "problems": problems})
    else:
        for problem in problems:
            err.print(f"problem: {problem}", highlight=False, soft_wrap=True)
        out.print("catalog is consistent" if not problems else f"{len(problems)} problem(s); try `mertsearch repair`")
    if problems:
        raise typer.Exit(1)


@app.command()
@friendly
def repair(
    catalog: CatalogOpt,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild both indexes and decide every duplicate link again.")
    ] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Fix what verify finds, from the stored data, then verify again.

    Removes orphan rows, fits what is missing (the transform, the similarity calibration),
    rebuilds an index that is wrong and links duplicate files again where needed."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        done = cat.repair(full=full)
        remaining = cat.verify()
    if as_json:
        print_json({"done": done, "problems": remaining})
    else:
        for line in done:
            out.print(line, highlight=False)
        if not done and not remaining:
            out.print("nothing to repair: the catalog is consistent")
        for problem in remaining:
            err.print(f"still a problem: {problem}", highlight=False, soft_wrap=True)
    if remaining:
        raise typer.Exit(1)


@app.command()
@friendly
def failures(catalog: CatalogOpt, as_json: JsonOpt = False) -> None:
    """List the files that could not be indexed, and why."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        rows = cat.failures()
    if as_json:
        print_json({"failed": rows})
        return
    show_failures(rows)
