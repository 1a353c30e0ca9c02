"""How well vectors retrieve tracks that share a label, and how spread their scores are.

Used to choose a layer: for each stored layer, every labelled track queries all the others, and
precision@k and average precision say how often tracks with the same label come first. The
labels come from folder names or a CSV (:func:`read_labels`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from mertsearch.errors import InvalidArgumentError

# Queries are scored in blocks, so memory stays at block x tracks.
_BLOCK = 256
# Labelled tracks that query, at most: beyond it a seeded sample of them. Each query ranks every
# other track, so the work is queries x tracks (a library's tracks squared without the cap).
QUERIES = 2000
# Up to this many relevant tracks a query ranks each by counting the tracks above it (a pass over
# the scores each); more are ranked by sorting the scores.
_COUNTED = 32


def label_retrieval(
    vectors: np.ndarray,
    labels: list[str | None],
    *,
    artists: list[str | None] | None = None,
    exclude_same_artist: bool = False,
    albums: list[str | None] | None = None,
    exclude_same_album: bool = False,
    k: int = 10,
    queries: int = QUERIES,
    seed: int = 0,
) -> dict[str, float]:
    """precision@k, mAP and nDCG@k of retrieving same-label tracks, each labelled track querying the rest.

    Tracks without a label are neither queries nor relevant, but stay in the ranking as
    distractors. With ``exclude_same_artist`` (``exclude_same_album``) a query's own artist's
    (album's) tracks are left out of its ranking, since artist effects inflate such scores. At
    most ``queries`` labelled tracks query: a sample drawn with ``seed`` when there are more
    (each still ranks every other track).
    """
    label_codes, artist_codes, album_codes = (_codes(values, len(labels)) for values in (labels, artists, albums))
    discounts = 1 / np.log2(np.arange(2, k + 2))
    precisions, average_precisions, ndcgs = [], [], []
    asked = np.flatnonzero(label_codes)
    if len(asked) > queries:
        asked = np.sort(np.random.default_rng(seed).choice(asked, queries, replace=False))
    for first in range(0, len(asked), _BLOCK):
        block = asked[first : first + _BLOCK]
        scores = vectors[block] @ vectors.T
        for row, query in enumerate(block):
            keep = np.ones(len(vectors), dtype=bool)
            keep[query] = False
            if exclude_same_artist and artist_codes[query]:
                keep &= artist_codes != artist_codes[query]
            if exclude_same_album and album_codes[query]:
                keep &= album_codes != album_codes[query]
            candidates = np.flatnonzero(keep)
            relevant = label_codes[candidates] == label_codes[query]
            if not relevant.any():
                continue  # nothing to find for this query
            hits, ranks = _ranked(scores[row, candidates], relevant, k)
            precisions.append(hits.mean() if len(hits) >= k else hits.sum() / k)
            average_precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
            top = hits.astype(float)
            ideal = discounts[: min(k, len(ranks))].sum()
            ndcgs.append(float((top * discounts[: len(top)]).sum() / ideal))
    if not precisions:
        return {"precision_at_k": float("nan"), "map": float("nan"), "ndcg_at_k": float("nan"), "queries": 0}
    return {
        "precision_at_k": float(np.mean(precisions)),
        "map": float(np.mean(average_precisions)),
        "ndcg_at_k": float(np.mean(ndcgs)),
        "queries": len(precisions),
    }


def _codes(values: list[str | None] | None, count: int) -> np.ndarray:
    """A number for each value (0 for none or empty), so comparisons over every track are integer ones."""
    if values is None:
        return np.zeros(count, dtype=np.int64)
    known: dict[str, int] = {}
    return np.array([known.setdefault(value, len(known) + 1) if value else 0 for value in values], dtype=np.int64)


def _ranked(scores: np.ndarray, relevant: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(whether each of the first k is relevant, the 1-based ranks of the relevant ones in order) in
    the ranking by descending score, ties in index order (a stable sort's). The first k come from a
    partition; the ranks, where few tracks are relevant, from counting the tracks above each one:
    a few passes over the scores instead of sorting them all."""
    count = len(scores)
    if count > k:
        kth = np.partition(scores, count - k)[count - k]  # the k-th highest
        above = np.flatnonzero(scores > kth)
        top = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    else:
        top = np.arange(count)
    top = top[np.lexsort((top, -scores[top]))]
    positions = np.flatnonzero(relevant)
    if len(positions) > _COUNTED:
        order = np.argsort(-scores, kind="stable")
        return relevant[top], np.flatnonzero(relevant[order]) + 1
    mine = scores[positions][:, None]
    higher = np.count_nonzero(scores > mine, axis=1)
    equal = scores == mine
    if equal.sum() > len(positions):  # ties besides each with itself: those before it come first
        higher += np.count_nonzero(equal & (np.arange(count) < positions[:, None]), axis=1)
    return relevant[top], np.sort(higher + 1)


def pair_scores(vectors: np.ndarray, *, pairs: int = 5000, seed: int = 0) -> np.ndarray:
    """Cosine scores between random pairs of distinct tracks (none with fewer than two tracks)."""
    if len(vectors) < 2:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(vectors), pairs)
    second = (first + rng.integers(1, len(vectors), pairs)) % len(vectors)
    return np.einsum("ij,ij->i", vectors[first], vectors[second])


def score_spread(vectors: np.ndarray, *, pairs: int = 5000, seed: int = 0) -> dict[str, float]:
    """Cosine scores between random pairs of distinct tracks: mean, standard deviation, 5th/95th percentiles."""
    if len(vectors) < 2:
        return {"mean": float("nan"), "std": float("nan"), "p5": float("nan"), "p95": float("nan")}
    return {key: value for key, value in spread(pair_scores(vectors, pairs=pairs, seed=seed)).items() if key != "count"}


def spread(scores: np.ndarray) -> dict:
    """Count, mean, standard deviation and 5th/95th percentiles of some scores (None for each when there are none)."""
    if not len(scores):
        return {"count": 0, "mean": None, "std": None, "p5": None, "p95": None}
    return {
        "count": int(len(scores)),
        "mean": round(float(scores.mean()), 4),
        "std": round(float(scores.std()), 4),
        "p5": round(float(np.percentile(scores, 5)), 4),
        "p95": round(float(np.percentile(scores, 95)), 4),
    }


def read_labels(path: Path) -> dict[str, str]:
    """Labels from a CSV with a header naming a ``label`` column and a ``path`` (or ``track_id``) column.

    Relative paths are taken from the CSV's own folder. Returns {absolute path or "#id": label}.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        if "label" not in fields or not fields & {"path", "track_id"}:
            raise InvalidArgumentError(f"{path} needs a header with a 'label' column and a 'path' or 'track_id' column")
        out = {}
        for row in reader:
            label = (row.get("label") or "").strip()
            if not label:
                continue
            if row.get("track_id"):
                out[f"#{int(row['track_id'])}"] = label
            else:
                out[os.fsdecode((path.parent / row["path"]).expanduser().absolute())] = label
        return out
