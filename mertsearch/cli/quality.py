"""`reindex`, `tune-layer` and `eval`: switch layers and measure the search, from stored vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
    friendly,
    out,
    print_json,
)


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
    """Switch the searched layer(s) or the centering from stored vectors, in seconds, without the model."""
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
        print_json(report)
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
@friendly
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
    model: WeightsOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
    duplicates: Annotated[
        int,
        typer.Option(
            help="Tracks to copy six ways (mp3, aac, opus, resampled, a trimmed start) and check as duplicates "
            "against the catalog, which they are not added to; 0 skips it.",
            min=0,
        ),
    ] = 5,
) -> None:
    """Measure how good the search is on this catalog: excerpts found (clean and degraded), label
    retrieval and (with every layer kept) excerpts found per stored layer, the spread of scores,
    raw and centered, of random pairs and true pairs, and duplicate files found. Writes a Markdown
    report with plots."""
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
            duplicates=duplicates,
        )
        report["files"] = write_report(report, out_dir or cat.directory / "eval")
    if as_json:
        print_json(report)
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
    out.print(f"{ident['excerpts']} excerpts of {seconds:g} s. Report: {report['files']['markdown']}", highlight=False)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
