"""How the results' similarity reads on a catalog: the median similarity of the true source of a
clean excerpt, of the k-th result, and of random pairs drawn apart from the calibration's own
(about 0.5 when the calibration still describes the catalog), per mode.

A catalog without a calibration gets None for each figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mertsearch.search.calibration import segment_pair_scores, track_pair_scores

if TYPE_CHECKING:
    from mertsearch.evaluation.excerpts import Excerpt
    from mertsearch.evaluation.protocol import CatalogLike
    from mertsearch.search.engine import SearchResult

# Random pairs per mode for the check: fewer than the calibration's, each of another draw.
CHECK_PAIRS = 1000
# Another seed than the calibration's (search.calibration.SEED): pairs it did not fit on.
CHECK_SEED = 1


def similarity_figures(catalog: CatalogLike, clean: list[tuple[Excerpt, list[SearchResult]]], *, k: int) -> dict:
    """{"source", "kth", "random_pairs": {mode: median}, "source_found", "k"} for ``catalog`` as it
    is searched now; ``clean``: each clean excerpt with the results its search gave."""
    calibration = catalog.calibration
    sources = [
        next((r.similarity for r in results if excerpt.path in (r.path, *r.alternates)), None)
        for excerpt, results in clean
    ]
    found = [value for value in sources if value is not None]
    kth = [results[k - 1].similarity for _, results in clean if len(results) >= k]
    random_pairs = dict.fromkeys(("tracks", "segments"))
    if calibration is not None:
        ids = catalog.store.ids("tracks")
        scores = {
            "tracks": track_pair_scores(catalog.store, catalog.transform, ids=ids, pairs=CHECK_PAIRS, seed=CHECK_SEED),
            "segments": segment_pair_scores(
                catalog.store,
                catalog.transform,
                ids=ids,
                pairs=CHECK_PAIRS,
                seed=CHECK_SEED,
                tolerance=catalog.windows.hop_s / 2,
                sampled=catalog.windows.sample_s is not None,
            ),
        }
        random_pairs = {
            mode: _median([calibration.similarity(mode, float(score)) for score in found_scores])
            for mode, found_scores in scores.items()
        }
    return {
        "calibrated": calibration is not None,
        "k": k,
        "source_found": len(found),
        "source": _median(found),
        "kth": _median([value for value in kth if value is not None]),
        "random_pairs": random_pairs,
    }


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


def similarity_lines(report: dict) -> list[str]:
    """The report's section in eval.md."""
    section = report.get("similarity")
    if not section:
        return []
    lines = ["## Similarity", ""]
    if not section["calibrated"]:
        missing = "The catalog has no similarity calibration yet (`mertsearch repair` or `reindex` fits one)."
        return [*lines, missing, ""]
    k = section["k"]
    lines += [
        "Median similarity (the share of the catalog's random pairs that score lower) of the true source "
        f"of a clean excerpt, of the result ranked {k}, and of random pairs drawn apart from the calibration's "
        "(about 0.5 while the calibration describes the catalog):",
        "",
        f"| layer | true source (found) | result {k} | random pairs, segments | random pairs, tracks |",
        "|---|---|---|---|---|",
    ]
    for row in [{"layer": "searched", **section}, *section.get("layers", [])]:
        pairs = row["random_pairs"]
        lines.append(
            f"| {row['layer']} | {_cell(row['source'])} ({row['source_found']}) | {_cell(row['kth'])} | "
            f"{_cell(pairs['segments'])} | {_cell(pairs['tracks'])} |"
        )
    return [*lines, ""]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
