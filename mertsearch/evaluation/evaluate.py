"""The numbers of `mertsearch eval` and `mertsearch tune-layer`, computed over opened catalogs.

The catalog keeps what is catalog lifecycle (making the temporary spectral baseline and the
scratch copy for the layer sweep) and hands them here, as callables, with itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mertsearch.errors import InvalidArgumentError
from mertsearch.evaluation.duplicates import evaluate_duplicates
from mertsearch.evaluation.excerpts import Excerpt, draw_excerpts, identify
from mertsearch.evaluation.metrics import QUERIES, label_retrieval, pair_scores, score_spread, spread
from mertsearch.evaluation.protocol import CatalogLike
from mertsearch.evaluation.similarity import similarity_figures
from mertsearch.indexer.relink import DuplicateCheck
from mertsearch.storage.transform import IDENTITY, VectorTransform
from mertsearch.text import fold


def tune_layers(
    catalog: CatalogLike,
    labels: dict[str, str] | None = None,
    *,
    exclude_same_artist: bool = False,
    exclude_same_album: bool = False,
    k: int = 10,
    queries: int = QUERIES,
) -> dict:
    """Label retrieval for every stored layer of ``catalog``, raw and centered; the best layer
    (see Catalog.tune_layers). At most ``queries`` labelled tracks query (a seeded sample of them:
    the same for every layer), each ranking every other track."""
    spec = catalog.manifest.encoder
    ids, per_layer = catalog.store.track_layer_vectors(spec.dim)
    layers = spec.kept_layers
    if not layers:  # only the searched vectors are stored: one row
        ids, vectors = catalog.store.all_track_vectors(spec.dim)
        per_layer = vectors[:, None, :]
        layers = ["+".join(map(str, spec.layers))]
    tracks = catalog.store.tracks_by_id(ids.tolist())
    if labels is None:
        track_labels = [Path(tracks[i].path).parent.name for i in ids]
    else:
        track_labels = [labels.get(tracks[i].path) or labels.get(f"#{i}") for i in ids]
    others = {
        # Folded: the same artist however its tags write it (see mertsearch.text).
        "artists": [fold(tracks[i].artist) or None for i in ids],
        "exclude_same_artist": exclude_same_artist,
        "albums": [fold(tracks[i].album) or None for i in ids],
        "exclude_same_album": exclude_same_album,
        "k": k,
        "queries": queries,
    }
    rows = []
    for position, layer in enumerate(layers):
        vectors = per_layer[:, position]
        centered = VectorTransform.fit("center", vectors)(vectors) if len(vectors) > 1 else vectors
        raw = label_retrieval(vectors, track_labels, **others)
        cen = label_retrieval(centered, track_labels, **others)
        rows.append(
            {
                "layer": layer,
                "precision_at_k": round(raw["precision_at_k"], 4),
                "map": round(raw["map"], 4),
                "ndcg_at_k": round(raw["ndcg_at_k"], 4),
                "precision_at_k_centered": round(cen["precision_at_k"], 4),
                "map_centered": round(cen["map"], 4),
                "ndcg_at_k_centered": round(cen["ndcg_at_k"], 4),
                "scores": score_spread(vectors),
                "scores_centered": score_spread(centered),
            }
        )
    scored = [row for row in rows if not np.isnan(row["map_centered"])]
    if not scored:
        raise InvalidArgumentError("no label is shared by two tracks: nothing to retrieve (check the labels)")
    best = max(scored, key=lambda row: (row["map_centered"], row["precision_at_k_centered"]))
    return {
        "tracks": len(ids),
        "labelled": sum(1 for label in track_labels if label),
        "labels": len({label for label in track_labels if label}),
        "queries": raw["queries"],
        "k": k,
        "exclude_same_artist": exclude_same_artist,
        "exclude_same_album": exclude_same_album,
        "layers": rows,
        "recommended_layer": best["layer"],
        "searched_layers": spec.layers,
    }


def evaluate(
    catalog: CatalogLike,
    *,
    excerpts: int,
    seconds: float,
    seed: int,
    k: int,
    labels: dict[str, str] | None,
    exclude_same_artist: bool,
    exclude_same_album: bool,
    baseline: Callable[[list[Excerpt]], CatalogLike] | None = None,
    sweep: Callable[[list[Excerpt]], CatalogLike] | None = None,
    duplicates: Callable[[], DuplicateCheck] | None = None,
    duplicate_tracks: int = 0,
) -> dict:
    """The report of Catalog.evaluate for ``catalog`` (see there); seeded.

    ``baseline`` makes a reference catalog of the excerpts' files and others (the spectral
    baseline), which answers the same excerpts; ``sweep`` a scratch copy of ``catalog`` (or of the
    excerpts' tracks and others) to switch between its kept layers (see excerpts.identify). Both
    are called with the excerpts once they are drawn, so a request that cannot be met fails
    before either is made. ``duplicates`` gives the catalog's duplicate
    decision, measured on copies of ``duplicate_tracks`` tracks (see evaluation.duplicates).
    """
    if excerpts < 1 or seconds <= 0:
        raise InvalidArgumentError("give at least one excerpt of more than 0 s")
    rng = np.random.default_rng(seed)
    drawn = draw_excerpts(catalog, count=excerpts, seconds=seconds, rng=rng)
    if not drawn:
        raise InvalidArgumentError(
            f"no track is longer than {seconds + catalog.windows.hop_s:g} s: use shorter excerpts"
        )
    spec = catalog.manifest.encoder
    options = {"exclude_same_artist": exclude_same_artist, "exclude_same_album": exclude_same_album, "k": k}
    catalogs = [catalog] if baseline is None else [catalog, baseline(drawn)]
    swept = None if sweep is None else sweep(drawn)
    found = identify(catalogs, drawn, rng, k=k, sweep=swept)
    label_reports = []
    for each in catalogs:
        try:
            label_reports.append(tune_layers(each, labels, **options))
        except InvalidArgumentError as exc:
            label_reports.append({"skipped": str(exc)})
    ids, vectors = catalog.store.all_track_vectors(spec.dim)
    center = VectorTransform.fit("center", vectors) if len(vectors) > 1 else IDENTITY
    centered = center(vectors)
    # True pairs at the level of the random pairs: a clean excerpt's pooled vector against its source
    # track's stored vector, raw and after the same centering.
    row_of = {int(track_id): row for row, track_id in enumerate(ids)}
    sources = np.stack([vectors[row_of[track_id]] for track_id, _ in found.clean_vectors])
    clean = np.stack([vector for _, vector in found.clean_vectors])
    true_raw = np.einsum("ij,ij->i", clean, sources)
    true_centered = np.einsum("ij,ij->i", center(clean), center(sources))
    true_scores = np.array(found.true_scores, dtype=np.float32)
    identification = {"excerpts": len(drawn), "k": k, "degradations": found.tables[0]}
    if found.layers is not None:
        identification["layers"] = found.layers
        identification["layers_tracks"] = swept.store.count("tracks")
    report = {
        "catalog": str(catalog.directory),
        "model": spec.source,
        "layers": spec.layers,
        "transform": catalog.manifest.transform.kind,
        "tracks": len(vectors),
        "seed": seed,
        "excerpt_seconds": seconds,
        "identification": identification,
        "labels": label_reports[0],
        "scores": {
            "random_pairs": score_spread(vectors, seed=seed),
            "random_pairs_centered": score_spread(centered, seed=seed),
            "true_matches": {
                "count": int(len(true_scores)),
                "mean": round(float(true_scores.mean()), 4) if len(true_scores) else None,
                "p5": round(float(np.percentile(true_scores, 5)), 4) if len(true_scores) else None,
            },
            "true_matches_raw": spread(true_raw),
            "true_matches_centered": spread(true_centered),
            "random_pair_samples": _rounded(pair_scores(vectors, pairs=2000, seed=seed)),
            "random_pair_samples_centered": _rounded(pair_scores(centered, pairs=2000, seed=seed)),
            "true_match_samples": _rounded(true_scores),
            "true_match_samples_raw": _rounded(true_raw),
            "true_match_samples_centered": _rounded(true_centered),
        },
    }
    report["similarity"] = similarity_figures(catalog, found.clean_results, k=k)
    if found.similarity_layers is not None:
        report["similarity"]["layers"] = found.similarity_layers
    if len(catalogs) > 1:
        reference = catalogs[1].manifest.encoder.source
        report["baseline"] = {
            "model": reference,
            "tracks": catalogs[1].store.count("tracks"),
            "degradations": found.tables[1],
            "labels": label_reports[1],
        }
    if duplicates is not None and duplicate_tracks > 0:
        report["duplicates"] = evaluate_duplicates(catalog, duplicates(), tracks=duplicate_tracks, seed=seed)
    return report


def _rounded(scores: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in scores]
