"""Read the tags users search and display (title, artist, album...) with mutagen."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import mutagen
from mutagen.id3 import ID3

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


# ID3 frames of the easy keys, for files whose ID3 tag mutagen gives only as frames (WAV, AIFF).
_ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "genre": "TCON",
    "date": "TDRC",
    "musicbrainz_trackid": "UFID:http://musicbrainz.org",
    "musicbrainz_albumid": "TXXX:MusicBrainz Album Id",
    "musicbrainz_artistid": "TXXX:MusicBrainz Artist Id",
}


def _frames(tags: ID3) -> dict[str, list[str]]:
    """An ID3 tag's frames under the easy keys."""
    found = {}
    for key, frame_id in _ID3_FRAMES.items():
        frame = tags.get(frame_id)
        if frame is not None:
            found[key] = (
                [frame.data.decode("ascii", "replace")] if frame_id.startswith("UFID") else list(map(str, frame.text))
            )
    return found


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
    tags = _frames(found.tags) if isinstance(found.tags, ID3) else found.tags
    values = {field: _first(tags.get(key)) for field, key in _EASY_KEYS.items()}
    date = _first(tags.get("date")) or _first(tags.get("originaldate"))
    match = _YEAR.search(date or "")
    return TrackTags(**values, year=int(match.group(1)) if match else None)
