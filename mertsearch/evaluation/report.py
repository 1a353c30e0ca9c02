"""The evaluation report on disk: eval.json, eval.md and PNG plots; and tune-layer's plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mertsearch.evaluation.similarity import similarity_lines


def write_report(report: dict, directory: Path) -> dict[str, str]:
    """Write the report of Catalog.evaluate into ``directory``; the files written, by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "json": directory / "eval.json",
        "markdown": directory / "eval.md",
        "scores": directory / "eval-scores.png",
    }
    files["json"].write_text(json.dumps(report, indent=2) + "\n")
    _scores_plot(report, files["scores"])
    if "layers" in report["labels"] or "layers" in report["identification"]:
        files["layers"] = directory / "eval-layers.png"
        _layers_plot(report, files["layers"])
    files["markdown"].write_text(_markdown(report, files))
    return {kind: str(path) for kind, path in files.items()}


def _markdown(report: dict, files: dict[str, Path]) -> str:
    ident = report["identification"]
    k = ident["k"]
    baseline = report.get("baseline")
    baseline_header = f" spectral baseline: recall@1 | recall@{k} | position error |" if baseline else ""
    lines = [
        f"# Search quality of {report['catalog']}",
        "",
        f"Model {report['model']}, layers {report['layers']}, {report['tracks']} tracks, seed {report['seed']}.",
        "",
        f"## Excerpt identification ({ident['excerpts']} excerpts of {report['excerpt_seconds']:g} s)",
        "",
        f"| degradation | recall@1 | recall@{k} | median position error |{baseline_header}",
        "|---|---|---|---|" + "---|" * (3 if baseline else 0),
    ]
    for name, row in ident["degradations"].items():
        line = f"| {name} | {_cells(row, k)} |"
        if baseline:
            line += f" {_cells(baseline['degradations'][name], k)} |"
        lines.append(line)
    if baseline and baseline.get("tracks", report["tracks"]) < report["tracks"]:
        lines += ["", _part("The spectral baseline indexed", baseline["tracks"], report["tracks"])]
    lines += _layer_rows(ident, report["tracks"])
    labels = report["labels"]
    lines += ["", "## Label retrieval", ""]
    if "layers" in labels:
        excluded = "".join(f" (same {what} excluded)" for what in ("artist", "album") if labels[f"exclude_same_{what}"])
        lines += [
            f"{labels['queries']} queries over {labels['labels']} labels{excluded}; best layer "
            f"{labels['recommended_layer']}.",
            "",
            f"| layer | precision@{labels['k']} | mAP | nDCG@{labels['k']} | precision@{labels['k']} centered "
            f"| mAP centered | nDCG@{labels['k']} centered |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in labels["layers"]:
            lines.append(
                f"| {row['layer']} | {row['precision_at_k']:.3f} | {row['map']:.3f} | {row['ndcg_at_k']:.3f} | "
                f"{row['precision_at_k_centered']:.3f} | {row['map_centered']:.3f} | {row['ndcg_at_k_centered']:.3f} |"
            )
        reference = (baseline or {}).get("labels", {})
        for row in reference.get("layers", []):
            lines.append(
                f"| spectral baseline | {row['precision_at_k']:.3f} | {row['map']:.3f} | {row['ndcg_at_k']:.3f} | "
                f"{row['precision_at_k_centered']:.3f} | {row['map_centered']:.3f} | {row['ndcg_at_k_centered']:.3f} |"
            )
    else:
        lines.append(f"Skipped: {labels['skipped']}")
    if "layers" in files:
        lines += ["", f"![layers]({files['layers'].name})"]
    scores = report["scores"]
    lines += [
        "",
        "## Score spread",
        "",
        "Cosine scores of random pairs of tracks (track vectors) against true pairs (a clean excerpt's pooled "
        "vector and its source track's), raw and after centering on the catalog's mean track vector:",
        "",
        "| pairs | count | mean | sd | 5% | 95% |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in [
        ("random_pairs", "random pairs, raw"),
        ("true_matches_raw", "true pairs, raw"),
        ("random_pairs_centered", "random pairs, centered"),
        ("true_matches_centered", "true pairs, centered"),
    ]:
        row = scores[key]
        count = row.get("count", "-")
        lines.append(f"| {name} | {count} | {row['mean']} | {row['std']} | {row['p5']} | {row['p95']} |")
    true = scores["true_matches"]
    lines += [
        "",
        f"As searched (segment alignment, in the catalog's own transform): {true['count']} clean excerpts found "
        f"first, mean score {true['mean']}.",
        "",
        f"![scores]({files['scores'].name})",
        "",
    ]
    lines += similarity_lines(report)
    lines += duplicates_section(report.get("duplicates"))
    lines += text_section(report.get("text"))
    return "\n".join(lines)


def _part(what: str, part: int, tracks: int) -> str:
    return f"{what} {part} of the {tracks} tracks: those of the excerpts and a seeded sample of the others."


def _layer_rows(ident: dict, tracks: int) -> list[str]:
    """Excerpt identification per kept layer: recall@1 / recall@k / median position error per degradation."""
    if "layers" not in ident:
        return []
    k = ident["k"]
    names = list(ident["layers"][0]["degradations"])
    lines = [
        "",
        f"### Per layer (recall@1 / recall@{k} / median position error)",
        "",
        "| layer | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in ident["layers"]:
        cells = [_cells(row["degradations"][name], k).replace(" | ", " / ") for name in names]
        lines.append(f"| {row['layer']} | " + " | ".join(cells) + " |")
    if ident.get("layers_tracks", tracks) < tracks:
        lines += ["", _part("The layers were searched on a copy of", ident["layers_tracks"], tracks)]
    return lines


def _cells(row: dict, k: int) -> str:
    error = "-" if row["median_position_error_s"] is None else f"{row['median_position_error_s']:.2f} s"
    return f"{row['recall_at_1']:.2f} | {row[f'recall_at_{k}']:.2f} | {error}"


def _scores_plot(report: dict, path: Path) -> None:
    """Random pairs against true pairs of track-level vectors, raw and centered; and the true matches as searched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = report["scores"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=120)
    panels = [
        ("raw", "random_pair_samples", "true_match_samples_raw", "true pairs (clean excerpt, track vectors)"),
        ("centered", "random_pair_samples_centered", "true_match_samples_centered", "true pairs, centered"),
        (
            f"as searched (transform: {report.get('transform', 'none')})",
            None,
            "true_match_samples",
            "true matches found first (segment score)",
        ),
    ]
    for axis, (title, random_key, true_key, true_label) in zip(axes, panels, strict=True):
        if random_key:
            axis.hist(scores[random_key], bins=50, alpha=0.6, density=True, label="random pairs of tracks")
        if scores[true_key]:
            axis.hist(scores[true_key], bins=20, alpha=0.6, density=True, label=true_label, color="C1")
        axis.set_xlabel("score (cosine)")
        axis.set_ylabel("density")
        axis.set_title(f"Scores, {title}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _layers_plot(report: dict, path: Path) -> None:
    """One figure of the metrics per layer: label retrieval, and excerpt identification when swept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    labels, ident = report["labels"], report["identification"]
    panels = ["labels"] * ("layers" in labels) + ["recall", "error"] * ("layers" in ident)
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), dpi=120, squeeze=False)
    for axis, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "labels":
            plot_label_retrieval(axis, labels)
            continue
        rows = ident["layers"]
        layers = [row["layer"] for row in rows]
        for number, name in enumerate(rows[0]["degradations"]):
            if panel == "recall":
                values = [row["degradations"][name]["recall_at_1"] for row in rows]
            else:
                values = [row["degradations"][name]["median_position_error_s"] for row in rows]
                values = [float("nan") if value is None else value for value in values]
            axis.plot(layers, values, "-o", markersize=3, label=name, color=f"C{number % 10}")
        if panel == "recall":
            key = f"recall_at_{ident['k']}"
            mean = [np.mean([cells[key] for cells in row["degradations"].values()]) for row in rows]
            axis.plot(layers, mean, "k--", label=f"recall@{ident['k']}, mean over degradations")
            axis.set_ylabel("recall@1")
            axis.set_title(f"Excerpt identification per layer ({ident['excerpts']} excerpts)")
        else:
            axis.set_yscale("symlog", linthresh=1.0)
            axis.yaxis.set_major_formatter(ScalarFormatter())
            axis.set_ylabel("median position error (s)")
        axis.set_xlabel("layer (hidden_states index)")
        axis.set_xticks(layers)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_plot(report: dict, path: Path) -> None:
    """Precision@k and mAP per layer, with and without centering, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    plot_label_retrieval(axis, report)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_label_retrieval(axis, report: dict) -> None:
    """Draw a tune_layers report (precision@k and mAP per layer, raw and centered) on a matplotlib axis."""
    rows = report["layers"]
    layers = [row["layer"] for row in rows]
    for key, name, style in [
        ("map", "mAP", "-o"),
        ("map_centered", "mAP, centered", "--o"),
        ("precision_at_k", f"precision@{report['k']}", "-s"),
        ("precision_at_k_centered", f"precision@{report['k']}, centered", "--s"),
    ]:
        axis.plot(layers, [row[key] for row in rows], style, label=name)
    axis.axvline(report["recommended_layer"], color="grey", linestyle=":", label=f"best: {report['recommended_layer']}")
    axis.set_xlabel("layer (hidden_states index)")
    axis.set_ylabel("score")
    axis.set_xticks(layers)
    excluded = ", same artist excluded" if report["exclude_same_artist"] else ""
    axis.set_title(f"Label retrieval per layer ({report['queries']} queries{excluded})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)


def duplicates_section(found: dict | None) -> list[str]:
    """The duplicate detection part of eval.md: copies found per kind, and the distinct pairs."""
    if not found:
        return []
    rule, pairs = found["rule"], found["distinct_pairs"]
    lines = [
        "## Duplicate files",
        "",
        f"Copies of {found['tracks_copied']} tracks checked against the catalog as an ingest checks a new file. "
        f"The rule links files whose durations agree within {rule['duration_tolerance_s']:g} s and whose "
        f"{rule['described']}.",
        "",
        "| copy | copies | found | wrongly linked | missed | median distance | max distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in found["copies"].items():
        lines.append(
            f"| {name} | {row['copies']} | {row['found']} | {row['wrongly_linked']} | {row['missed']} | "
            f"{_number(row['median_distance'])} | {_number(row['max_distance'])} |"
        )
    closest = pairs["closest"]
    lines += [
        "",
        f"Recall {_share(found['recall'])}, precision {_share(found['precision'])}.",
        "",
        f"Distinct pairs among the catalog's own tracks (each of {pairs['tracks']} against its nearest tracks and "
        f"its folder's): {pairs['pairs']} pairs ({pairs['same_folder']} in one folder, {pairs['durations_fit']} with "
        f"durations that agree), {pairs['linked']} linked; {pairs['grouped']} pairs the catalog groups as one "
        "recording were left out.",
    ]
    if closest is not None:
        lines.append(f"The closest distinct pair lies at {closest['distance']:.2g}: {' and '.join(closest['paths'])}.")
    return [*lines, ""]


def text_section(found: dict | None) -> list[str]:
    """The text search part of eval.md: captions made from tags, against chance."""
    if not found:
        return []
    if "skipped" in found:
        return ["## Text search", "", f"Not measured: {found['skipped']}.", ""]
    return [
        "## Text search",
        "",
        f'{found["captions"]} captions made from the tracks\' {found["source"]} ("{found["template"]}", e.g. '
        f"{', '.join(repr(c) for c in found['examples'][:3])}), each ranking every track: "
        f"precision@{found['k']} {found['precision_at_k']:.3f}, mAP {found['map']:.3f}; chance "
        f"{found['chance']:.3f}. Captions from tags say less than a description; with random weights "
        "these are chance's figures.",
        "",
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
