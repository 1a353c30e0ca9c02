"""Mixes that live on the server, for clients with no sonic support at all: playlists of the sync
account, "Sonic mix: recently played" (from its scrobbles that pass through) and one for each of
its starred songs, made from the catalog and replaced in place at each refresh. Only playlists
that carry MARK as their comment are ever changed or deleted."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable

from mertsearch.subsonic.mapping import SongMap
from mertsearch.subsonic.upstream import Upstream

log = logging.getLogger(__name__)
PREFIX = "Sonic mix: "
MARK = "Made by mertsearch from how the songs sound; replaced at each refresh."
SIZE = 25  # songs in a mix
PLAYED = 50  # scrobbles remembered (the mix seeds from the newest RECENT_SEEDS the catalog knows)
RECENT_SEEDS = 3
MAX_STARRED = 10  # starred songs that get a mix of their own, the most recently starred first


class Mixes:
    def __init__(self, upstream: Upstream, user: str) -> None:
        self.upstream, self.user = upstream, user
        self.played: deque[str] = deque(maxlen=PLAYED)

    def heard(self, song_id: str) -> None:
        self.played.append(song_id)

    async def refresh(self, songs: SongMap, mix: Callable[[list[str]], Awaitable[list[dict]]]) -> None:
        """Make each wanted mix with ``mix(seeds)`` and put it on the server: a playlist of ours
        of that name has its songs replaced, else one is created; ours no longer wanted (a song
        unstarred) are deleted."""
        wanted: dict[str, list[str]] = {}
        recent = list(dict.fromkeys(s for s in reversed(self.played) if s in songs.track_of))[:RECENT_SEEDS]
        if recent:
            wanted[PREFIX + "recently played"] = recent
        starred = ((await self.upstream.call("getStarred2")).get("starred2") or {}).get("song") or []
        starred = sorted(starred, key=lambda song: str(song.get("starred") or ""), reverse=True)
        for song in [s for s in starred if str(s.get("id")) in songs.track_of][:MAX_STARRED]:
            wanted[f"{PREFIX}{song.get('artist') or '?'} - {song.get('title') or '?'}"] = [str(song["id"])]
        ours = {playlist["name"]: str(playlist["id"]) for playlist in await self._ours()}
        for name, seeds in wanted.items():
            ids = [entry["id"] for entry in await mix(seeds)]
            if name in ours:
                await self.upstream.call("createPlaylist", playlistId=ours[name], songId=ids)  # replaces its songs
            else:
                await self._create(name, ids)
        for name, playlist_id in ours.items():
            if name not in wanted:
                await self.upstream.call("deletePlaylist", id=playlist_id)
        log.info("subsonic: %d sonic mixes on the server", len(wanted))

    async def _playlists(self) -> list[dict]:
        return ((await self.upstream.call("getPlaylists")).get("playlists") or {}).get("playlist") or []

    async def _ours(self) -> list[dict]:
        return [p for p in await self._playlists() if p.get("owner") == self.user and p.get("comment") == MARK]

    async def _create(self, name: str, ids: list[str]) -> None:
        """A new playlist, marked as ours. Older servers answer createPlaylist without the
        playlist: it is the one of that name that was not there before."""
        before = {str(p["id"]) for p in await self._playlists()}
        made = (await self.upstream.call("createPlaylist", name=name, songId=ids)).get("playlist") or {}
        new = str(made["id"]) if "id" in made else None
        if new is None:
            found = [str(p["id"]) for p in await self._playlists() if p.get("name") == name]
            new = next((i for i in found if i not in before), None)
        if new is not None:
            await self.upstream.call("updatePlaylist", playlistId=new, comment=MARK)
