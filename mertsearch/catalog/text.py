"""Text search: tracks described in words, through CLaMP 3's shared text and music space.

A catalog with text search stores one text vector per track, made at ingest by CLaMP 3's audio
tower from the MERT-v1-95M run the catalog makes anyway (see encoder.text_features). A query's
words go through the text tower; the tracks nearest them come back ranked with the same
filters, diversity and exclusions as any search. A track's ``similarity`` is the share of the
catalog's tracks (a fixed random sample) that score lower for these words.

Words and a clip together ("like this, with vocals"): the clip's search finds its candidates
(CANDIDATES_PER_RESULT a result), which are ranked again by the mean of their two similarities:
the clip's (its calibration) and the words'. The clip says which tracks; the words reorder them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mertsearch.catalog.core import Core
from mertsearch.catalog.queries import filter_ids, refuse_seed_options
from mertsearch.config import TextSpec
from mertsearch.encoder.text_features import check_text_catalog
from mertsearch.errors import CatalogMismatchError, InvalidArgumentError
from mertsearch.search.engine import Query, Ranking, SearchResult, TimeRange, rank_candidates
from mertsearch.search.options import SearchOptions

CANDIDATES_PER_RESULT = 5


def enable(cat: Core, source: str | None = None) -> TextSpec:
    """Give the catalog text search (the caller holds the writer lock): its manifest names the
    CLaMP 3 checkpoint; the next ingest makes every track's text vector."""
    if cat.manifest.text is not None:
        return cat.manifest.text
    from mertsearch.encoder.clamp3 import load_clamp3

    check_text_catalog(cat.windows, cat.manifest.encoder, cat.manifest.encoder.dim)  # before any download
    model = load_clamp3(source)
    check_text_catalog(cat.windows, cat.manifest.encoder, model.feature_dim)
    cat.manifest.text = TextSpec(
        source=model.source, revision=model.revision, weights_sha256=model.weights_sha256, dim=model.dim
    )
    cat.save_manifest()
    cat.use_text_model(model)
    return cat.manifest.text


def load_model(cat: Core):
    """The catalog's CLaMP 3 checkpoint, whose weights must be the ones its text vectors came from."""
    from mertsearch.encoder.clamp3 import REPO_ID, load_clamp3

    spec = needs_text(cat)
    model = load_clamp3(None if spec.source == REPO_ID else spec.source)
    if model.weights_sha256 != spec.weights_sha256:
        raise CatalogMismatchError(
            f"the CLaMP 3 weights at {model.directory} are not the ones this catalog's text vectors "
            f"came from (sha256 {spec.weights_sha256[:12]}...)"
        )
    return model


def needs_text(cat: Core) -> TextSpec:
    if cat.manifest.text is None:
        raise InvalidArgumentError(
            "this catalog has no text vectors: add them with `mertsearch index FOLDER --catalog "
            f"{cat.directory} --text` (text search needs a catalog of MERT-v1-95M)"
        )
    return cat.manifest.text


def search_text(cat: Core, text: str, options: SearchOptions) -> Ranking:
    """Tracks that fit the words ``text``, best first (see the module's doc)."""
    _refuse_seed_options(options, "a text query")
    needs_text(cat)
    vector = cat.text_model.text_vectors([text])[0]
    return _ranked(cat, vector, options)


def search_clip_text(cat: Core, embedding, vector: np.ndarray, options: SearchOptions) -> Ranking:
    """A clip's results, ranked again by the mean of their similarity to the clip and to the words
    whose text vector is ``vector``."""
    from mertsearch.catalog.queries import search_embedding

    if cat.calibration is None:
        raise InvalidArgumentError(
            "a clip with words needs the catalog's similarity calibration: run `mertsearch repair`"
        )
    wider = options.changed(k=min(options.k * CANDIDATES_PER_RESULT, 500), min_similarity=None, min_score=None)
    found = search_embedding(cat, embedding, wider)
    vectors = cat.store.text_vectors_of([r.track_id for r in found])
    words = cat.text_index.similarity(vector)
    combined = []
    for result in found:
        if result.track_id not in vectors:
            continue
        both = (result.similarity + words(float(vectors[result.track_id] @ vector))) / 2
        combined.append(replace(result, similarity=round(both, 4)))
    combined.sort(key=lambda r: -r.similarity)
    if options.min_similarity is not None:
        combined = [r for r in combined if r.similarity >= options.min_similarity]
    if options.min_score is not None:
        combined = [r for r in combined if r.score >= options.min_score]
    return Ranking(combined[: options.k], partial=found.partial)


def _refuse_seed_options(options: SearchOptions, what: str) -> None:
    refuse_seed_options(options, what)
    if options.mode not in (None, "tracks"):
        raise InvalidArgumentError(f"{what} ranks whole tracks: leave out mode")


def _ranked(cat: Core, vector: np.ndarray, options: SearchOptions) -> Ranking:
    index = cat.text_index
    current = index.current()
    similarity = index.similarity(vector)
    empty = np.zeros((0, len(vector)), np.float32)
    ranked = rank_candidates(
        mode="tracks",
        tracks_index=current,
        windows_index=current,  # unused in tracks mode
        store=cat.store,
        query=Query(vector, empty, np.zeros((0, 2)), clip=False),
        k=options.k,
        rules=options.rules(filter_ids(cat, options)),
        similarity=similarity,
        rescore=lambda ids: cat.store.text_vectors_of(ids),
    )
    results = [
        SearchResult(
            track_id=c.track_id,
            path=(track := ranked.rows[c.track_id]).path,
            title=track.title,
            artist=track.artist,
            album=track.album,
            score=round(c.score, 6),
            match=TimeRange(0.0, round(track.duration, 3)),
            query=TimeRange(0.0, 0.0),
            duration=round(track.duration, 3),
            similarity=similarity(c.score),
        )
        for c in ranked.chosen
    ]
    return Ranking(results, partial=ranked.partial)
