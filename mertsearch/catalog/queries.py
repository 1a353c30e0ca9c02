"""Queries against a catalog: a clip's vectors, or tracks already in it, to ranked results."""

from __future__ import annotations

import numpy as np

from mertsearch.catalog.core import Core
from mertsearch.encoder.pooling import Embedding, l2_normalize
from mertsearch.errors import InvalidArgumentError
from mertsearch.search import Query
from mertsearch.search.engine import Ranked, Ranking, rank_candidates
from mertsearch.search.options import SearchOptions
from mertsearch.storage.store import from_blob


def search_embedding(cat: Core, embedding: Embedding, options: SearchOptions) -> Ranking:
    """See :meth:`mertsearch.catalog.Catalog.search_embedding`; the caller has taken up the
    database's layers and transform (:meth:`Core.take_up_meta`) before the clip was embedded."""
    refuse_seed_options(options, "a clip")
    times = np.stack([embedding.window_starts, embedding.window_ends], axis=1)
    probes = embedding.probes
    if probes is not None:
        probes = (cat.transform(probes.vectors), np.stack([probes.starts, probes.ends], axis=1))
    vectors = embedding.window_vectors
    return _rank(cat, embedding.vector, vectors, times, options, mode="segments", clip=True, probes=probes).results()


def refuse_seed_options(options: SearchOptions, what: str) -> None:
    """Options that need seed tracks, refused for a query that has none (``what``: "a clip")."""
    if options.exclude_seed_artist:
        raise InvalidArgumentError(f"exclude_seed_artist is for similar tracks; {what} has no seeds")
    if options.exclude or options.no_repeat_artist or options.no_repeat_album or options.shuffle:
        raise InvalidArgumentError("exclude, no_repeat_artist, no_repeat_album and shuffle are for similar tracks")


def similar(
    cat: Core, ids: list[int], options: SearchOptions, *, exclude=(), exclude_artists=(), exclude_albums=()
) -> Ranking:
    """Tracks most similar to the mean of the catalog tracks ``ids``, which are left out with their
    other files; ``exclude`` (recordings' leading ids), ``exclude_artists`` and ``exclude_albums``
    ((artist, album) pairs) leave out more (see mertsearch.catalog.radio)."""
    rules = {"exclude": exclude, "exclude_artists": exclude_artists, "exclude_albums": exclude_albums}
    return similar_ranked(cat, ids, options, **rules).results()


def similar_ranked(
    cat: Core,
    ids: list[int],
    options: SearchOptions,
    *,
    exclude=(),
    exclude_artists=(),
    exclude_albums=(),
    allowed: np.ndarray | None = None,
) -> Ranked:
    """:func:`similar`'s ranking before its results are made (see mertsearch.search.engine.Ranked);
    ``allowed``: the options' filters' tracks, where the caller has them already."""
    cat.take_up_meta()
    rows = cat.store.tracks_by_id(ids)
    windows = cat.store.windows_of(ids)
    vector = l2_normalize(np.mean([from_blob(rows[i].vector) for i in ids], axis=0))
    window_vectors = np.concatenate([windows[i][1] for i in ids])
    times = np.concatenate([windows[i][0] for i in ids])
    artists = [rows[i].artist for i in ids if rows[i].artist] if options.exclude_seed_artist else []
    seeds = {rows[i].duplicate_of or i for i in ids}
    return _rank(
        cat,
        vector,
        window_vectors,
        times,
        options,
        mode="tracks",
        clip=False,
        exclude=seeds | set(exclude),
        exclude_artists=[*artists, *exclude_artists],
        exclude_albums=exclude_albums,
        allowed=allowed,
    )


def _rank(
    cat: Core,
    vector: np.ndarray,
    window_vectors: np.ndarray,
    times: np.ndarray,
    options: SearchOptions,
    *,
    mode: str,
    clip: bool,
    exclude=(),
    exclude_artists=(),
    exclude_albums=(),
    probes: tuple[np.ndarray, np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
) -> Ranked:
    """``mode`` is the query's default, where the options name none; ``clip``: the query is audio
    (its results say where it starts), not catalog tracks; ``probes``: its probe windows
    (transformed vectors, times); ``allowed``: the filters' tracks, if the caller has them."""
    mode = options.mode or mode
    calibration = cat.calibration
    if allowed is None:
        allowed = filter_ids(cat, options)
    query = Query(
        cat.transform(vector[None, :])[0],
        cat.transform(window_vectors),
        times,
        *(probes or (None, None)),
        clip=clip,
    )
    return rank_candidates(
        mode=mode,
        tracks_index=cat.indexes.tracks,
        windows_index=cat.indexes.windows,
        store=cat.store,
        query=query,
        k=options.k,
        rules=options.rules(allowed, exclude=exclude, exclude_artists=exclude_artists, exclude_albums=exclude_albums),
        transform=cat.transform,
        tolerance=cat.windows.hop_s / 2,
        sampled=cat.windows.sample_s is not None,
        similarity=None if calibration is None else calibration.scorer(mode),
    )


def filter_ids(cat: Core, options: SearchOptions) -> np.ndarray | None:
    """The ids of the tracks the options' filters allow, sorted; None without filters."""
    filters = options.filters
    return cat.store.track_ids_where(filters.condition()) if filters else None
