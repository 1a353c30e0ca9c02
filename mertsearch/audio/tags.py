"""Read the tags users search and display (title, artist, album...) with mutagen."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import mutagen

_YEAR = re.compile(r"(\d{4})")


@dataclass(frozen=True)
class TrackTags:
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    genre: str | None = None
    year: int | None = None
    musicbrainz_track_id: str | None = None
    musicbrainz_album_id: str | None = None
    musicbrainz_artist_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# mutagen's "easy" interface gives these keys the same names across ID3, MP4, Vorbis and FLAC.
_EASY_KEYS = {
    "title": "title",
    "artist": "artist",
    "album": "album",
    "genre": "genre",
    "musicbrainz_track_id": "musicbrainz_trackid",
    "musicbrainz_album_id": "musicbrainz_albumid",
    "musicbrainz_artist_id": "musicbrainz_artistid",
}


def _first(value) -> str | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def read_tags(path: str | Path) -> TrackTags:
    """Tags of the file at ``path``; missing or unreadable tags give None fields, never an error.

    Tags are a convenience: a file whose tags are broken can still be indexed by its audio.
    """
    try:
        found = mutagen.File(str(path), easy=True)
    except Exception:  # mutagen raises many types for malformed headers
        return TrackTags()
    if found is None or found.tags is None:
        return TrackTags()
    tags = found.tags
    values = {field: _first(tags.get(key)) for field, key in _EASY_KEYS.items()}
    date = _first(tags.get("date")) or _first(tags.get("originaldate"))
    match = _YEAR.search(date or "")
    return TrackTags(**values, year=int(match.group(1)) if match else None)
