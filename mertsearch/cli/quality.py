"""`reindex`, `tune-layer` and `eval`: switch layers and measure the search, from stored vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mertsearch.cli.common import (
    CatalogOpt,
    DeviceOpt,
    JsonOpt,
    LayerOpt,
    LayersOpt,
    PrecisionOpt,
    WaitOpt,
    WeightsOpt,
    app,
    err,
    friendly,
    out,
    print_json,
)
from mertsearch.cli.layout import Column, add_row, show

LABELS, EXCERPTS = "Labels", "Excerpts"
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        help="CSV with a header: 'path' (or 'track_id') and 'label'. Default: each track's folder name.",
        rich_help_panel=LABELS,
    ),
]
SameArtistOpt = Annotated[
    bool,
    typer.Option(
        "--exclude-same-artist",
        help="Leave a query's own artist out of its ranking (artist effects inflate scores).",
        rich_help_panel=LABELS,
    ),
]
SameAlbumOpt = Annotated[
    bool,
    typer.Option(
        "--exclude-same-album",
        help="Leave a query's own album out of its ranking (album effects inflate scores).",
        rich_help_panel=LABELS,
    ),
]


@app.command()
@friendly
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
    """Switch the searched layers or centering, without the model.

    From the stored vectors, in seconds."""
    from mertsearch.catalog import Catalog

    with Catalog.open(catalog) as cat:
        cat.wait_s = wait
        report = cat.reindex(layer=layer, layers=layers, transform=transform)
    if as_json:
        print_json(report)
        return
    before, after = report["scores_before"], report["scores_after"]
    out.print(
        f"searching layers {report['layers']} with transform '{report['transform']}' over {report['tracks']} "
        f"tracks ({report['tracks_rewritten']} rewritten, {report['seconds']:.1f} s). Scores between random "
        f"pairs: mean {before['mean']} sd {before['std']} before, mean {after['mean']} sd {after['std']} now",
        highlight=False,
    )


@app.command("tune-layer")
@friendly
def tune_layer(
    catalog: CatalogOpt,
    labels: LabelsOpt = None,
    exclude_same_artist: SameArtistOpt = False,
    exclude_same_album: SameAlbumOpt = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Precision at this rank.", min=1, rich_help_panel=LABELS)] = 10,
    plot: Annotated[
        Path | None, typer.Option(help="Where to write the PNG plot (default: DIR/tune-layer.png).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the stored layers on label retrieval; recommend one.

    Precision@k and mAP of every stored layer, raw and centered."""
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
        print_json(report)
        return
    show(out, layer_columns(report, k))
    out.print(
        f"{report['queries']} queries over {report['tracks']} tracks, {report['labels']} labels. "
        f"Recommended layer: {report['recommended_layer']} (searching {report['searched_layers']} now; "
        f"switch with `mertsearch reindex --catalog {catalog} --layer N`). Plot: {destination}",
        highlight=False,
    )


@app.command(name="eval")
@friendly
def evaluate(
    catalog: CatalogOpt,
    excerpts: Annotated[
        int,
        typer.Option(
            help="Random excerpts to identify (each under every degradation).", min=1, rich_help_panel=EXCERPTS
        ),
    ] = 50,
    seconds: Annotated[float, typer.Option(help="Length of each excerpt.", min=1, rich_help_panel=EXCERPTS)] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of every random choice: same seed, same numbers.")] = 0,
    labels: LabelsOpt = None,
    exclude_same_artist: SameArtistOpt = False,
    exclude_same_album: SameAlbumOpt = False,
    k: Annotated[int, typer.Option("-k", "--k", help="Recall and precision at this rank.", min=1)] = 10,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for eval.md, eval.json and the plots (default: DIR/eval).")
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also answer the excerpts with the spectral baseline, as a reference (indexes the files again "
            "in a temporary catalog).",
            rich_help_panel=EXCERPTS,
        ),
    ] = True,
    model: WeightsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
    duplicates: Annotated[
        int,
        typer.Option(
            help="Tracks to copy six ways (mp3, aac, opus, resampled, trimmed) and check as duplicates "
            "(the catalog is not changed); 0 skips it.",
            min=0,
        ),
    ] = 5,
) -> None:
    """Measure how well search works on this catalog; write a report.

    Excerpts found (clean and degraded), label retrieval and (with every layer kept) excerpts
    found per stored layer, the spread of scores, raw and centered, of random pairs and true
    pairs, and duplicate files found. Writes a Markdown report with plots."""
    from mertsearch.catalog import Catalog
    from mertsearch.evaluation.metrics import read_labels
    from mertsearch.evaluation.report import write_report

    with Catalog.open(catalog, model=model, device=device, precision=precision, mmap=True) as cat:
        # Said first, on stderr (--json's document stays alone on stdout): a big library's evaluation is long.
        plan = cat.evaluation_plan(excerpts=excerpts, baseline=baseline, duplicates=duplicates)
        err.print(plan_line(plan), highlight=False)
        report = cat.evaluate(
            excerpts=excerpts,
            seconds=seconds,
            seed=seed,
            k=k,
            labels=read_labels(labels) if labels else None,
            exclude_same_artist=exclude_same_artist,
            exclude_same_album=exclude_same_album,
            baseline=baseline,
            duplicates=duplicates,
        )
        report["files"] = write_report(report, out_dir or cat.directory / "eval")
    if as_json:
        print_json(report)
        return
    ident = report["identification"]
    show(out, degradation_columns(report, k))
    for row in ident.get("layers", []):
        recalls = [cells["recall_at_1"] for cells in row["degradations"].values()]
        out.print(
            f"layer {row['layer']}: recall@1 clean {row['degradations']['clean']['recall_at_1']:.2f}, "
            f"mean over degradations {sum(recalls) / len(recalls):.2f}",
            highlight=False,
        )
    similarity = report.get("similarity") or {}
    if similarity.get("calibrated"):
        out.print(
            f"median similarity: true source {similarity['source']}, result {k} {similarity['kth']}, random pairs "
            f"{similarity['random_pairs']['segments']} (segments) / {similarity['random_pairs']['tracks']} (tracks)",
            highlight=False,
        )
    if "duplicates" in report:
        found = report["duplicates"]
        pairs = found["distinct_pairs"]
        out.print(
            f"duplicates: recall {_share(found['recall'])}, precision {_share(found['precision'])} on copies of "
            f"{found['tracks_copied']} tracks; {pairs['linked']} of {pairs['pairs']} distinct pairs linked",
            highlight=False,
        )
    text = report.get("text")
    if text and "skipped" not in text:
        out.print(
            f"text search: {text['captions']} captions from {text['source']}, precision@{text['k']} "
            f"{text['precision_at_k']:.2f}, mAP {text['map']:.2f} (chance {text['chance']:.2f})",
            highlight=False,
        )
    out.print(f"{ident['excerpts']} excerpts of {seconds:g} s. Report: {report['files']['markdown']}", highlight=False)


def layer_columns(report: dict, k: int) -> list[Column]:
    """tune-layer's table: a row per stored layer, the recommended one marked with *."""
    headers = ("layer", f"P@{k}", "mAP", f"P@{k}\ncentered", "mAP\ncentered", "score sd", "sd\ncentered")
    columns = [Column(header, justify="right") for header in headers]
    for row in report["layers"]:
        mark = " *" if row["layer"] == report["recommended_layer"] else ""
        cells = [f"{row['layer']}{mark}"]
        cells += [f"{row[key]:.3f}" for key in ("precision_at_k", "map", "precision_at_k_centered", "map_centered")]
        add_row(columns, [*cells, f"{row['scores']['std']:.3f}", f"{row['scores_centered']['std']:.3f}"])
    return columns


def degradation_columns(report: dict, k: int) -> list[Column]:
    """eval's table: excerpts found under each degradation, and by the spectral baseline if it ran."""
    reference = report.get("baseline")
    headers = ["degradation", "recall@1", f"recall@{k}", "position\nerror"]
    headers += ["spectral\nrecall@1", f"spectral\nrecall@{k}"] if reference else []
    columns = [Column(headers[0], floor=16)] + [Column(header, justify="right") for header in headers[1:]]
    for name, row in report["identification"]["degradations"].items():
        error = "-" if row["median_position_error_s"] is None else f"{row['median_position_error_s']:.2f} s"
        cells = [name, f"{row['recall_at_1']:.2f}", f"{row[f'recall_at_{k}']:.2f}", error]
        if reference:
            other = reference["degradations"][name]
            cells += [f"{other['recall_at_1']:.2f}", f"{other[f'recall_at_{k}']:.2f}"]
        add_row(columns, cells)
    return columns


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plan_line(plan: dict) -> str:
    """What an evaluation will do, in a line (see Catalog.evaluation_plan)."""
    parts = [
        f"eval of {plan['tracks']} tracks: {plan['excerpts']} excerpts, {plan['searches']} searches",
        f"label retrieval of up to {plan['label_queries']} queries, {plan['label_rankings']} rankings",
    ]
    if plan["baseline_files"]:
        parts.append(f"baseline: {plan['baseline_files']} files indexed again ({plan['baseline_audio_hours']:g} h)")
    if plan["sweep_layers"]:
        parts.append(f"{plan['sweep_layers']} layers swept on a copy of {plan['sweep_tracks']} tracks")
    if plan["duplicate_tracks"]:
        parts.append(f"{plan['duplicate_tracks']} tracks copied six ways for duplicates")
    return "; ".join(parts)
