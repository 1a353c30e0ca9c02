"""Which catalog track each upstream song is: by path, then MusicBrainz id, then artist, title
and duration. Songs the catalog does not hold are left out; nothing is guessed between several
equally good candidates."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from mertsearch.storage.schema import Track
from mertsearch.text import fold

# A song's duration is whole seconds in Subsonic; a re-encode may differ by a codec's padding.
DURATION_SLACK_S = 2.0
# A Child object's fields that are the requesting user's (OpenSubsonic's Child): the sync's are
# not the caller's, so none is kept.
PER_USER = frozenset({"starred", "userRating", "playCount", "played", "bookmarkPosition"})


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

    entries: dict[str, bytes] = field(default_factory=dict)  # song id -> its Child (see _compact)
    track_of: dict[str, int] = field(default_factory=dict)
    song_of: dict[int, str] = field(default_factory=dict)
    song_at: dict[str, str] = field(default_factory=dict)  # catalog path -> song id
    by: dict[str, int] = field(default_factory=dict)  # how many songs each rule matched
    # The matched songs of each album (its ID3 id and its folder's) and of each artist.
    albums: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    artists: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def __len__(self) -> int:
        return len(self.track_of)

    def entry(self, song_id: str) -> dict:
        """The song's Child object, as the upstream sent it at the last sync."""
        return json.loads(self.entries[song_id])

    def seeds(self, some_id: str) -> list[str]:
        """The matched songs an id names: a song, an album's or an artist's songs; none where
        the map knows none of them."""
        if some_id in self.track_of:
            return [some_id]
        if some_id in self.albums:
            return self.albums[some_id]
        return self.artists.get(some_id, [])


def catalog_tracks(store) -> list[CatalogTrack]:
    """What the matching needs of every catalog track (no vector is read)."""
    columns = (Track.id, Track.path, Track.musicbrainz_track_id, Track.artist, Track.title, Track.duration)
    with store.session() as session:
        return [CatalogTrack(*row) for row in session.execute(select(*columns))]


def catalog_state(store) -> tuple:
    """What changes when the catalog's tracks do (added, forgotten, re-embedded, retagged)."""
    columns = (func.count(Track.id), func.max(Track.id), func.max(Track.indexed_at), func.max(Track.mtime_ns))
    with store.session() as session:
        return tuple(session.execute(select(*columns)).one())


def _parts(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.replace("\\", "/").split("/") if part not in ("", "."))


def _key(text: str | None) -> str:
    return " ".join(fold(text).split())


class Matcher:
    """Matches upstream songs to ``tracks`` one at a time (a sync's pages as they come) into
    ``songs``. A song's ``path`` is relative to its music folder: under ``roots`` (the upstream's
    folders as the catalog sees them) it must name the catalog's path exactly; without roots,
    the catalog path that ends with it, when only one does."""

    def __init__(self, tracks: Sequence[CatalogTrack], roots: Sequence[str] = ()) -> None:
        self.roots = roots
        self.exact = {os.path.normpath(t.path): t.id for t in tracks}
        self.path_of = {t.id: t.path for t in tracks}
        # By file name only (one entry a track, however deep its folders); suffixes compared on lookup.
        self.by_name: dict[str, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        if not roots:
            for t in tracks:
                parts = _parts(t.path)
                if parts:
                    self.by_name[parts[-1]].append((parts, t.id))
        self.by_mbid: dict[str, list[int]] = defaultdict(list)
        self.by_tags: dict[tuple[str, str], list[CatalogTrack]] = defaultdict(list)
        for t in tracks:
            if t.musicbrainz_id:
                self.by_mbid[t.musicbrainz_id.strip().lower()].append(t.id)
            if t.artist and t.title:
                self.by_tags[_key(t.artist), _key(t.title)].append(t)
        self.songs = SongMap()
        self.seen = 0  # upstream songs read
        self.missing: list[str] = []  # unmatched songs' paths, relative to their music folder

    def add(self, song: dict) -> None:
        song_id = song.get("id")
        if song_id is None or song.get("isDir") or song.get("isVideo"):
            return
        self.seen += 1
        song_id, result = str(song_id), self.songs
        for name, rule in (("path", self._by_path), ("musicbrainz", self._by_musicbrainz), ("tags", self._by_tags)):
            track_id = rule(song)
            # One song per track: a second upstream copy of a file keeps the first's mapping.
            if track_id is not None and track_id not in result.song_of:
                result.entries[song_id], result.track_of[song_id] = _compact(song), track_id
                result.song_of[track_id], result.song_at[self.path_of[track_id]] = song_id, song_id
                result.by[name] = result.by.get(name, 0) + 1
                for group, keys in ((result.albums, ("albumId", "parent")), (result.artists, ("artistId",))):
                    for key in {str(song[k]) for k in keys if song.get(k) is not None}:
                        group[key].append(song_id)
                return
        relative = song.get("path")
        if self.roots and isinstance(relative, str) and _parts(relative) and ".." not in _parts(relative):
            self.missing.append("/".join(_parts(relative)))

    def _by_path(self, song: dict) -> int | None:
        relative = song.get("path")
        if not isinstance(relative, str) or not _parts(relative):
            return None
        if self.roots:
            paths = (os.path.normpath(os.path.join(root, *_parts(relative))) for root in self.roots)
            found = {self.exact.get(path) for path in paths} - {None}
            return found.pop() if len(found) == 1 else None
        wanted = _parts(relative)
        found = [i for parts, i in self.by_name.get(wanted[-1], []) if parts[-len(wanted) :] == wanted]
        return found[0] if len(found) == 1 else None

    def _by_musicbrainz(self, song: dict) -> int | None:
        found = self.by_mbid.get(str(song.get("musicBrainzId") or "").strip().lower(), [])
        return found[0] if len(found) == 1 else None

    def _by_tags(self, song: dict) -> int | None:
        candidates = self.by_tags.get((_key(song.get("artist")), _key(song.get("title"))), [])
        duration = song.get("duration")
        if isinstance(duration, (int, float)):
            candidates = [t for t in candidates if abs(t.duration - duration) <= DURATION_SLACK_S]
        return candidates[0].id if len(candidates) == 1 else None


def match(songs: Iterable[dict], tracks: Sequence[CatalogTrack], roots: Sequence[str] = ()) -> SongMap:
    """Map ``songs`` (Subsonic Child objects) to ``tracks`` (see Matcher)."""
    matcher = Matcher(tracks, roots)
    for song in songs:
        matcher.add(song)
    return matcher.songs


def _compact(song: dict) -> bytes:
    """A song's Child object as kept between syncs: its JSON text (a few times smaller than the
    dict), without what is the sync account's own (its stars, ratings, plays), which no other
    user's answer should show."""
    kept = {k: v for k, v in song.items() if k not in PER_USER}
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
