"""The HTTP routes of queues and journeys: `GET /radio` (the next tracks after a listening
history) and `GET /path` (a song path between two tracks). The queue options of
`GET /tracks/{id}/similar` are declared here too, so the three routes take them alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Query
from pydantic import Field

from mertsearch.catalog import Catalog
from mertsearch.search.options import SearchOptions

SQL_INT_MAX = 2**63 - 1
MAX_HISTORY = 1000  # ids in one request's history or exclusions

# The largest 64-bit integer (the databases' ids): a bigger id is a 422, not an overflow in the database.
Id = Annotated[int, Field(ge=1, le=SQL_INT_MAX)]
Exclude = Annotated[
    list[Id] | None,
    Query(max_length=MAX_HISTORY, description="Ids never returned, nor other files of their recordings (oldest first)"),
]
NoRepeat = Annotated[int | None, Query(ge=0, le=MAX_HISTORY)]
Shuffle = Annotated[float, Query(ge=0, le=1000, allow_inf_nan=False)]
Seed = Annotated[int | None, Query(ge=0, le=SQL_INT_MAX)]
Combine = Annotated[str, Query(pattern="^(agreement|average)$")]
Filter = Annotated[list[str] | None, Query(alias="filter")]
Seconds = Annotated[float | None, Query(ge=0, allow_inf_nan=False)]
Year = Annotated[int | None, Query(ge=-9999, le=9999)]
Cap = Annotated[int | None, Query(ge=1, le=1000)]


def add_routes(app: FastAPI, catalog: Callable[[], Catalog], lock: threading.Lock, auth, heavy: Callable) -> None:
    """Add `GET /radio` and `GET /path` to ``app``: ``catalog`` gives the open catalog, ``lock``
    serialises FAISS work as for the other searches, ``auth`` checks the token, and ``heavy`` runs a
    route in the threads kept for work that waits on the lock."""

    @app.get("/radio", dependencies=[auth], summary="The next tracks after a listening history")
    @heavy
    def radio(
        history: Annotated[list[Id], Query(min_length=1, max_length=MAX_HISTORY, description="Ids, oldest first")],
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        filter_: Filter = None,
        min_duration: Seconds = None,
        max_duration: Seconds = None,
        min_year: Year = None,
        max_year: Year = None,
        per_artist: Cap = None,
        per_album: Cap = None,
        min_score: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        min_similarity: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
        exclude: Exclude = None,
        no_repeat_artist: NoRepeat = None,
        no_repeat_album: NoRepeat = None,
        shuffle: Shuffle = 0.0,
        seed: Seed = None,
        combine: Combine = "agreement",
    ) -> dict:
        options = SearchOptions.parse(
            filter_,
            min_duration=min_duration,
            max_duration=max_duration,
            min_year=min_year,
            max_year=max_year,
            k=k,
            per_artist=per_artist,
            per_album=per_album,
            min_score=min_score,
            min_similarity=min_similarity,
            exclude=tuple(exclude or ()),
            no_repeat_artist=no_repeat_artist,
            no_repeat_album=no_repeat_album,
            shuffle=shuffle,
            seed=seed,
            combine=combine,
        )
        with lock:
            results = catalog().radio(history, options)
        return {"results": [r.as_dict() for r in results], "partial": results.partial}

    @app.get("/path", dependencies=[auth], summary="A song path of count tracks from one track to another")
    @heavy
    def path(
        start: Annotated[int, Query(ge=1, le=SQL_INT_MAX, description="The first track's id")],
        end: Annotated[int, Query(ge=1, le=SQL_INT_MAX, description="The last track's id")],
        count: Annotated[int, Query(ge=2, le=1000, description="Tracks in the path, both ends included")] = 10,
        filter_: Filter = None,
        min_duration: Seconds = None,
        max_duration: Seconds = None,
        min_year: Year = None,
        max_year: Year = None,
        per_artist: Cap = None,
        per_album: Cap = None,
        exclude: Exclude = None,
        no_repeat_artist: NoRepeat = None,
        no_repeat_album: NoRepeat = None,
    ) -> dict:
        options = SearchOptions.parse(
            filter_,
            min_duration=min_duration,
            max_duration=max_duration,
            min_year=min_year,
            max_year=max_year,
            per_artist=per_artist,
            per_album=per_album,
            exclude=tuple(exclude or ()),
            no_repeat_artist=no_repeat_artist,
            no_repeat_album=no_repeat_album,
        )
        with lock:
            results = catalog().path(start, end, count, options)
        return {"results": [r.as_dict() for r in results]}
