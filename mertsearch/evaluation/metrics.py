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


def label_retrieval(
    vectors: np.ndarray,
    labels: list[str | None],
    *,
    artists: list[str | None] | None = None,
    exclude_same_artist: bool = False,
    albums: list[str | None] | None = None,
    exclude_same_album: bool = False,
    k: int = 10,
) -> dict[str, float]:
    """precision@k, mAP and nDCG@k of retrieving same-label tracks, each labelled track querying the rest.

    Tracks without a label are neither queries nor relevant, but stay in the ranking as
    distractors. With ``exclude_same_artist`` (``exclude_same_album``) a query's own artist's
    (album's) tracks are left out of its ranking, since artist effects inflate such scores.
    """
    labels_arr = np.array([label or "" for label in labels], dtype=object)
    artist_arr = np.array([a or "" for a in (artists or [None] * len(labels))], dtype=object)
    album_arr = np.array([a or "" for a in (albums or [None] * len(labels))], dtype=object)
    discounts = 1 / np.log2(np.arange(2, k + 2))
    precisions, average_precisions, ndcgs = [], [], []
    queries = [i for i, label in enumerate(labels_arr) if label]
    for first in range(0, len(queries), _BLOCK):
        block = queries[first : first + _BLOCK]
        scores = vectors[block] @ vectors.T
        for row, query in enumerate(block):
            keep = np.ones(len(vectors), dtype=bool)
            keep[query] = False
            if exclude_same_artist and artist_arr[query]:
                keep &= artist_arr != artist_arr[query]
            if exclude_same_album and album_arr[query]:
                keep &= album_arr != album_arr[query]
            candidates = np.flatnonzero(keep)
            relevant = labels_arr[candidates] == labels_arr[query]
            if not relevant.any():
                continue  # nothing to find for this query
            order = np.argsort(-scores[row, candidates], kind="stable")
            hits = relevant[order]
            precisions.append(hits[:k].mean() if len(hits) >= k else hits.sum() / k)
            ranks = np.flatnonzero(hits) + 1
            average_precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
            top = hits[:k].astype(float)
            ideal = discounts[: min(k, int(hits.sum()))].sum()
            ndcgs.append(float((top * discounts[: len(top)]).sum() / ideal))
    if not precisions:
        return {"precision_at_k": float("nan"), "map": float("nan"), "ndcg_at_k": float("nan"), "queries": 0}
    return {
        "precision_at_k": float(np.mean(precisions)),
        "map": float(np.mean(average_precisions)),
        "ndcg_at_k": float(np.mean(ndcgs)),
        "queries": len(precisions),
    }


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
