"""The evaluation report on disk: eval.json, eval.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from mertsearch.search.tuning import write_plot


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
    if "layers" in report["labels"]:
        files["layers"] = directory / "eval-layers.png"
        write_plot(report["labels"], files["layers"])
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
        lines += ["", f"![layers]({files['layers'].name})"]
    else:
        lines.append(f"Skipped: {labels['skipped']}")
    scores = report["scores"]
    raw, centered, true = scores["random_pairs"], scores["random_pairs_centered"], scores["true_matches"]
    lines += [
        "",
        "## Score spread",
        "",
        f"Random pairs of tracks: mean {raw['mean']} (sd {raw['std']}, 5-95% {raw['p5']}..{raw['p95']}); "
        f"centered: mean {centered['mean']} (sd {centered['std']}). "
        f"True matches (clean excerpts found first): {true['count']}, mean score {true['mean']}.",
        "",
        f"![scores]({files['scores'].name})",
        "",
    ]
    return "\n".join(lines)


def _cells(row: dict, k: int) -> str:
    error = "-" if row["median_position_error_s"] is None else f"{row['median_position_error_s']:.2f} s"
    return f"{row['recall_at_1']:.2f} | {row[f'recall_at_{k}']:.2f} | {error}"


def _scores_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = report["scores"]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    axis.hist(
        scores["random_pair_samples"], bins=50, alpha=0.6, density=True, label="random pairs of tracks (track vectors)"
    )
    if scores["true_match_samples"]:
        axis.hist(
            scores["true_match_samples"],
            bins=20,
            alpha=0.6,
            density=True,
            label="true matches (clean excerpts, segment score)",
        )
    axis.set_xlabel("score (cosine)")
    axis.set_ylabel("density")
    axis.set_title("Scores: random pairs against true matches")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
