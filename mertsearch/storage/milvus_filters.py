"""Search filters as Milvus boolean expressions over the scalar fields both collections carry
(the track's artist, album and genre folded as mertsearch.text.fold does, year, duration and
path), so Milvus searches among the allowed vectors only and returns k whenever k match."""

from __future__ import annotations

import json

import numpy as np

from mertsearch.storage.filters import TEXT_FIELDS, Filters
from mertsearch.text import fold

# Longest text kept in a scalar field (Milvus's VARCHAR needs a bound); longer tags are cut, so a
# filter on one is checked against the database instead (see expression).
TEXT_LIMIT = 1024
PATH_LIMIT = 4096
# LIKE's own characters in a path prefix: such a prefix is checked against the database instead.
LIKE_SPECIAL = ("%", "_", "\\")
# A track without a year holds this in the year field: Milvus before 2.5 has no nullable fields.
# Below any year a filter names, and a bound's expression leaves it out, so a yearless track
# passes no year filter, as in SQL, where NULL compares false.
NO_YEAR = -(2**31)


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def tag_key(value: str | None) -> str:
    """How a text tag is stored for filtering: folded, as the SQL filter compares it."""
    return fold(value)[:TEXT_LIMIT]


def expression(filters: Filters) -> str | None:
    """The Milvus expression for ``filters``, or None when one of them cannot be written as one
    (the caller then filters by the ids the database allows)."""
    parts = []
    for name in TEXT_FIELDS:
        wanted = [fold(value) for value in getattr(filters, name)]
        if any(len(value) >= TEXT_LIMIT for value in wanted):
            return None
        if wanted:
            parts.append(f"{name} in [{', '.join(quoted(value) for value in wanted)}]")
    if filters.path_prefix:
        if any(c in prefix for prefix in filters.path_prefix for c in LIKE_SPECIAL) or any(
            len(prefix) >= PATH_LIMIT for prefix in filters.path_prefix
        ):
            return None
        parts.append("(" + " or ".join(f"path like {quoted(prefix + '%')}" for prefix in filters.path_prefix) + ")")
    for field, low, high in (
        ("year", filters.min_year, filters.max_year),
        ("duration", filters.min_duration, filters.max_duration),
    ):
        if low is not None:
            parts.append(f"{field} >= {low}")
        if high is not None:
            parts.append(f"{field} <= {high}")
            if field == "year":
                parts.append(f"year > {NO_YEAR}")
    return " and ".join(parts) if parts else None


def ids_expression(field: str, ids: np.ndarray) -> str:
    return f"{field} in [{', '.join(str(int(i)) for i in ids)}]"
