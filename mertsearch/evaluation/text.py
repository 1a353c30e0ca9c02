"""How well words find the tracks they describe, on a catalog's own tags.

Each distinct label (a genre tag, else the labels given or the folder names) becomes a caption
("jazz music"); its words rank every track with a text vector, and the tracks with that label are
the relevant ones. precision@k and mAP come with what chance would give (the label's share of the
tracks), since captions made from tags say less than a person's description. With random weights
the figures are chance's: the quality of text search is measured on real weights only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mertsearch.evaluation.metrics import _codes, _ranked

# Captions asked at most (the most common labels first): each ranks every track.
CAPTIONS = 200
TEMPLATE = "{} music"


def caption_retrieval(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    embed: Callable[[list[str]], np.ndarray],
    *,
    k: int = 10,
    source: str = "genre",
) -> dict:
    """precision@k and mAP of captions made from ``labels`` (one per track, as ``vectors``' rows;
    None: unlabelled, a distractor) ranking the tracks; ``embed`` turns captions into vectors."""
    codes = _codes(list(labels), len(labels))
    counts = np.bincount(codes)
    names = {code: label for label, code in zip(labels, codes, strict=True) if code}
    # Labels of at least two tracks, the most common first.
    asked = [code for code in np.argsort(-counts, kind="stable") if code and counts[code] >= 2][:CAPTIONS]
    if not asked:
        return {"skipped": f"no {source} is shared by two tracks", "source": source}
    captions = [TEMPLATE.format(names[code]) for code in asked]
    queries = embed(captions)
    precisions, average_precisions, chance = [], [], []
    for code, query in zip(asked, queries, strict=True):
        relevant = codes == code
        hits, ranks = _ranked(vectors @ query, relevant, k)
        precisions.append(hits.sum() / k)
        average_precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
        chance.append(relevant.mean())
    return {
        "source": source,
        "captions": len(asked),
        "template": TEMPLATE,
        "k": k,
        "precision_at_k": round(float(np.mean(precisions)), 4),
        "map": round(float(np.mean(average_precisions)), 4),
        "chance": round(float(np.mean(chance)), 4),
        "examples": captions[:5],
    }
