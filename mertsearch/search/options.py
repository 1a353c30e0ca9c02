"""How to search: one set of options for the Python API, the command line and the HTTP API."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mertsearch.errors import InvalidArgumentError
from mertsearch.search.engine import MODES, Rules
from mertsearch.storage.filters import Filters

MAX_K = 10000


@dataclass(frozen=True)
class SearchOptions:
    """``k`` results; ``mode`` "segments" (windows against windows: finds a clip inside a long
    track) or "tracks" (whole-track vectors), None for the default of the query (segments for a
    clip, tracks for catalog tracks); ``filters`` limit the tracks searched; ``per_artist`` /
    ``per_album`` cap results per artist / album; ``min_score`` drops weaker results;
    ``exclude_seed_artist`` leaves out the artists of the seed tracks (similar tracks only);
    ``min_similarity`` (0 to 1) drops results whose similarity is lower (see
    mertsearch.search.calibration; the catalog must have a calibration)."""

    k: int = 10
    mode: str | None = None
    filters: Filters | None = None
    per_artist: int | None = None
    per_album: int | None = None
    min_score: float | None = None
    exclude_seed_artist: bool = False
    min_similarity: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise InvalidArgumentError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.mode is not None and self.mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("per_artist", "per_album"):
            cap = getattr(self, name)
            if cap is not None and cap < 1:
                raise InvalidArgumentError(f"{name} must be at least 1, got {cap}")
        if self.min_similarity is not None and not 0.0 <= self.min_similarity <= 1.0:
            raise InvalidArgumentError(f"min_similarity must be between 0 and 1, got {self.min_similarity}")

    @classmethod
    def parse(
        cls,
        filter: list[str] | None = None,  # noqa: A002 - the name of the option everywhere
        *,
        min_duration: float | None = None,
        max_duration: float | None = None,
        min_year: int | None = None,
        max_year: int | None = None,
        **fields,
    ) -> SearchOptions:
        """From the command line's and the HTTP API's options: ``filter`` expressions (artist=,
        album=, genre=, year=, path=) and ranges become :class:`Filters`."""
        filters = Filters.parse(
            filter or [], min_duration=min_duration, max_duration=max_duration, min_year=min_year, max_year=max_year
        )
        return cls(filters=filters or None, **fields)

    def changed(self, **fields) -> SearchOptions:
        return dataclasses.replace(self, **fields) if fields else self

    def rules(self, allowed: np.ndarray | None, *, exclude=(), exclude_artists=()) -> Rules:
        """The ranking's rules, with ``allowed`` the ids of the tracks the filters let through."""
        return Rules(
            allowed=allowed,
            exclude=exclude,
            exclude_artists=exclude_artists,
            per_artist=self.per_artist,
            per_album=self.per_album,
            min_score=self.min_score,
            min_similarity=self.min_similarity,
        )
