"""How to search: one set of options for the Python API, the command line and the HTTP API."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mertsearch.errors import InvalidArgumentError
from mertsearch.search.engine import MODES, Rules
from mertsearch.storage.filters import Filters

MAX_K = 10000
# How several seeds make one query (see mertsearch.search.radio).
COMBINE = ("agreement", "average")


@dataclass(frozen=True)
class SearchOptions:
    """``k`` results; ``mode`` "segments" (windows against windows: finds a clip inside a long
    track) or "tracks" (whole-track vectors), None for the default of the query (segments for a
    clip, tracks for catalog tracks); ``filters`` limit the tracks searched; ``per_artist`` /
    ``per_album`` cap results per artist / album; ``min_score`` drops weaker results;
    ``exclude_seed_artist`` leaves out the artists of the seed tracks (similar tracks only);
    ``min_similarity`` (0 to 1) drops results whose similarity is lower (see
    mertsearch.search.calibration; the catalog must have a calibration).

    Queue continuation (similar tracks): ``exclude`` tracks (ids or paths, oldest first: what was
    played) are never returned, nor other files of their recordings; ``no_repeat_artist`` /
    ``no_repeat_album`` N leave out the artists / albums of the last N of ``exclude``;
    ``shuffle`` T > 0 draws the k results from the best 4k, each draw taking one of those left
    with a weight of exp(similarity / T) (the score where the catalog has no calibration),
    ``seed`` making the draws repeatable (None: new ones each time); ``combine`` says how several
    seeds make one query: "agreement" fuses the seeds' own neighbour lists (reciprocal-rank
    fusion, so tracks near several seeds come first), "average" searches with their mean vector
    (see mertsearch.search.radio)."""

    k: int = 10
    mode: str | None = None
    filters: Filters | None = None
    per_artist: int | None = None
    per_album: int | None = None
    min_score: float | None = None
    exclude_seed_artist: bool = False
    min_similarity: float | None = None
    exclude: Sequence[int | str | os.PathLike] = ()
    no_repeat_artist: int | None = None
    no_repeat_album: int | None = None
    shuffle: float = 0.0
    seed: int | None = None
    combine: str = "agreement"

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
        self._check_queue()

    def _check_queue(self) -> None:
        if isinstance(self.exclude, (str, bytes, int, os.PathLike)):
            raise InvalidArgumentError("exclude must be a list of track ids or paths")
        object.__setattr__(self, "exclude", tuple(self.exclude))  # frozen: one immutable, ordered copy
        for name in ("no_repeat_artist", "no_repeat_album"):
            count = getattr(self, name)
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise InvalidArgumentError(f"{name} must be a whole number of tracks, 0 or more, got {count!r}")
        if (
            isinstance(self.shuffle, bool)
            or not isinstance(self.shuffle, (int, float))
            or not 0.0 <= self.shuffle < math.inf
        ):
            raise InvalidArgumentError(f"shuffle must be a temperature of 0 or more, got {self.shuffle!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise InvalidArgumentError(f"seed must be a whole number, 0 or more, got {self.seed!r}")
        if self.combine not in COMBINE:
            raise InvalidArgumentError(f"combine must be one of {', '.join(COMBINE)}, got {self.combine!r}")

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

    def rules(self, allowed: np.ndarray | None, *, exclude=(), exclude_artists=(), exclude_albums=()) -> Rules:
        """The ranking's rules, with ``allowed`` the ids of the tracks the filters let through."""
        return Rules(
            allowed=allowed,
            exclude=exclude,
            exclude_artists=exclude_artists,
            per_artist=self.per_artist,
            per_album=self.per_album,
            min_score=self.min_score,
            min_similarity=self.min_similarity,
            exclude_albums=exclude_albums,
            filters=self.filters if allowed is not None else None,
        )
