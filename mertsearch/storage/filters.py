"""Metadata filters (artist, album, genre, year, path, duration) as SQL conditions on tracks."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from mertsearch.errors import InvalidArgumentError
from mertsearch.storage.schema import Track
from mertsearch.text import fold

# --filter keys that match a text tag exactly, as mertsearch.text.fold compares (any case, any form).
TEXT_FIELDS = ("artist", "album", "genre")


@dataclass(frozen=True)
class Filters:
    """Tracks to search among. Values of one field are alternatives (OR); fields combine with AND."""

    artist: tuple[str, ...] = ()
    album: tuple[str, ...] = ()
    genre: tuple[str, ...] = ()
    path_prefix: tuple[str, ...] = ()
    min_year: int | None = None
    max_year: int | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, expressions: list[str], **ranges) -> Filters:
        """From CLI ``--filter key=value`` expressions (artist, album, genre, year, path) and ranges."""
        values: dict[str, list[str]] = {"artist": [], "album": [], "genre": [], "path_prefix": []}
        years: list[int] = []
        for expression in expressions:
            key, sep, value = expression.partition("=")
            key = key.strip().lower()
            if not sep or not value.strip():
                raise InvalidArgumentError(
                    f"a filter is key=value (artist, album, genre, year, path), got {expression!r}"
                )
            if key in TEXT_FIELDS:
                values[key].append(value.strip())
            elif key == "path":
                values["path_prefix"].append(value.strip())
            elif key == "year":
                try:
                    years.append(int(value))
                except ValueError:
                    raise InvalidArgumentError(f"year must be a number, got {value!r}") from None
            else:
                raise InvalidArgumentError(f"unknown filter {key!r}: use artist, album, genre, year or path")
        if years:
            ranges["min_year"] = max(ranges.get("min_year") or min(years), min(years))
            ranges["max_year"] = min(ranges.get("max_year") or max(years), max(years))
        return cls(**{k: tuple(v) for k, v in values.items()}, **{k: v for k, v in ranges.items() if v is not None})

    def __bool__(self) -> bool:
        return any(
            [self.artist, self.album, self.genre, self.path_prefix]
            + [v is not None for v in (self.min_year, self.max_year, self.min_duration, self.max_duration)]
        )

    def condition(self) -> ColumnElement[bool]:
        parts = []
        for name in TEXT_FIELDS:
            wanted = getattr(self, name)
            if wanted:
                parts.append(getattr(Track, f"{name}_key").in_([fold(w) for w in wanted]))
        if self.path_prefix:
            parts.append(or_(*(Track.path.startswith(prefix, autoescape=True) for prefix in self.path_prefix)))
        for column, low, high in [
            (Track.year, self.min_year, self.max_year),
            (Track.duration, self.min_duration, self.max_duration),
        ]:
            if low is not None:
                parts.append(column >= low)
            if high is not None:
                parts.append(column <= high)
        return and_(*parts) if parts else true()
