"""`GET /search?text=...`: tracks that fit a description in words, in a catalog with text search
(see mertsearch.catalog.text). A clip with words goes to `POST /search` with a ``text`` field."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Query

from mertsearch.api.errors import ApiError
from mertsearch.api.journeys import Cap, Filter, Seconds, Year
from mertsearch.catalog import Catalog
from mertsearch.encoder.text_features import MAX_TEXT_CHARS
from mertsearch.search.options import SearchOptions

Words = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="The music in words, e.g. 'slow sad piano with rain' (about 100 languages)",
    ),
]


def add_routes(
    app: FastAPI,
    catalog: Callable[[], Catalog],
    lock: threading.Lock,
    auth,
    heavy: Callable,
    unavailable: Callable[[], str | None],
) -> None:
    """Add `GET /search` to ``app`` (the arguments as for mertsearch.api.journeys.add_routes;
    ``unavailable`` says why the text model could not load, if it could not)."""

    @app.get("/search", dependencies=[auth], summary="Tracks that fit a description in words")
    @heavy
    def search_text(
        text: Words,
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
    ) -> dict:
        if (reason := unavailable()) is not None:
            raise ApiError(503, f"search by words is unavailable: {reason}")
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
        )
        with lock:
            results = catalog().search_text(text, options)
        return {"results": [r.as_dict() for r in results], "partial": results.partial}
