"""Which catalog track each upstream song is: by path, then MusicBrainz id, then artist, title
and duration. Songs the catalog does not hold are left out; nothing is guessed between several
equally good candidates."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from mertsearch.storage.schema import Track
from mertsearch.text import fold

# A song's duration is whole seconds in Subsonic; a re-encode may differ by a codec's padding.
DURATION_SLACK_S = 2.0


@dataclass(frozen=True)
class CatalogTrack:
    id: int
    path: str
    musicbrainz_id: str | None
    artist: str | None
    title: str | None
    duration: float


@dataclass
class SongMap:
    """Upstream song id -> catalog track id, both ways, with each song's Child object as the
    upstream sent it."""

    entries: dict[str, dict] = field(default_factory=dict)
    track_of: dict[str, int] = field(default_factory=dict)
    song_of: dict[int, str] = field(default_factory=dict)
    song_at: dict[str, str] = field(default_factory=dict)  # catalog path -> song id
    by: dict[str, int] = field(default_factory=dict)  # how many songs each rule matched
    # The matched songs of each album (its ID3 id and its folder's) and of each artist.
    albums: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    artists: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def __len__(self) -> int:
        return len(self.track_of)

    def seeds(self, some_id: str, *, songs: bool = True, albums: bool = True) -> list[str]:
        """The matched songs an id names: a song, an album's or an artist's songs; none where
        the map knows none of them."""
        if songs and some_id in self.track_of:
            return [some_id]
        if albums and some_id in self.albums:
            return self.albums[some_id]
        return self.artists.get(some_id, [])


def catalog_tracks(store) -> list[CatalogTrack]:
    """What the matching needs of every catalog track (no vector is read)."""
    columns = (Track.id, Track.path, Track.musicbrainz_track_id, Track.artist, Track.title, Track.duration)
    with store.session() as session:
        return [CatalogTrack(*row) for row in session.execute(select(*columns))]


def _parts(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.replace("\\", "/").split("/") if part not in ("", "."))


def _key(text: str | None) -> str:
    return " ".join(fold(text).split())


def match(songs: Iterable[dict], tracks: Sequence[CatalogTrack], roots: Sequence[str] = ()) -> SongMap:
    """Map ``songs`` (Subsonic Child objects) to ``tracks``. A song's ``path`` is relative to
    its music folder: under ``roots`` (the upstream's folders as the catalog sees them) it must
    name the catalog's path exactly; without roots, the catalog path that ends with it, when
    only one does."""
    exact = {os.path.normpath(t.path): t.id for t in tracks}
    # By file name only (one entry a track, however deep its folders); suffixes compared on lookup.
    by_name: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    if not roots:
        for t in tracks:
            parts = _parts(t.path)
            if parts:
                by_name[parts[-1]].append((parts, t.id))
    by_mbid: dict[str, list[int]] = defaultdict(list)
    by_tags: dict[tuple[str, str], list[CatalogTrack]] = defaultdict(list)
    for t in tracks:
        if t.musicbrainz_id:
            by_mbid[t.musicbrainz_id.strip().lower()].append(t.id)
        if t.artist and t.title:
            by_tags[_key(t.artist), _key(t.title)].append(t)

    def by_path(song: dict) -> int | None:
        relative = song.get("path")
        if not isinstance(relative, str) or not _parts(relative):
            return None
        if roots:
            found = {exact.get(os.path.normpath(os.path.join(root, *_parts(relative)))) for root in roots} - {None}
            return found.pop() if len(found) == 1 else None
        wanted = _parts(relative)
        found = [i for parts, i in by_name.get(wanted[-1], []) if parts[-len(wanted) :] == wanted]
        return found[0] if len(found) == 1 else None

    def by_musicbrainz(song: dict) -> int | None:
        found = by_mbid.get(str(song.get("musicBrainzId") or "").strip().lower(), [])
        return found[0] if len(found) == 1 else None

    def by_artist_title(song: dict) -> int | None:
        candidates = by_tags.get((_key(song.get("artist")), _key(song.get("title"))), [])
        duration = song.get("duration")
        if isinstance(duration, (int, float)):
            candidates = [t for t in candidates if abs(t.duration - duration) <= DURATION_SLACK_S]
        return candidates[0].id if len(candidates) == 1 else None

    path_of = {t.id: t.path for t in tracks}
    result = SongMap()
    rules = (("path", by_path), ("musicbrainz", by_musicbrainz), ("tags", by_artist_title))
    for song in songs:
        song_id = song.get("id")
        if song_id is None or song.get("isDir") or song.get("isVideo"):
            continue
        song_id = str(song_id)
        for name, rule in rules:
            track_id = rule(song)
            # One song per track: a second upstream copy of a file keeps the first's mapping.
            if track_id is not None and track_id not in result.song_of:
                result.entries[song_id], result.track_of[song_id] = song, track_id
                result.song_of[track_id], result.song_at[path_of[track_id]] = song_id, song_id
                result.by[name] = result.by.get(name, 0) + 1
                for group, keys in ((result.albums, ("albumId", "parent")), (result.artists, ("artistId",))):
                    for key in {str(song[k]) for k in keys if song.get(k) is not None}:
                        group[key].append(song_id)
                break
    return result
