"""The Subsonic pass-through: every ``/rest/<method>`` request goes to the upstream server
unchanged, except the sonicSimilarity endpoints and getSimilarSongs(2) for songs the catalog
knows, which the catalog answers for clients the upstream accepts, and
getOpenSubsonicExtensions, whose list gains sonicSimilarity."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from mertsearch.catalog import Catalog
from mertsearch.errors import InvalidArgumentError, MertSearchError
from mertsearch.subsonic import responses, sonic
from mertsearch.subsonic.indexing import NewMusic
from mertsearch.subsonic.mapping import Matcher, SongMap, catalog_state, catalog_tracks
from mertsearch.subsonic.mixes import SIZE as MIX_SIZE
from mertsearch.subsonic.mixes import Mixes
from mertsearch.subsonic.responses import Format
from mertsearch.subsonic.upstream import Upstream

log = logging.getLogger(__name__)
MAX_COUNT = 500  # songs in one sonicSimilarity answer
RETRY_S = 60.0  # after a failed sync, the next one
FULL_SYNC_S = 86400.0  # a sync reads every song at least this often, changed or not (stars, moved files)
# What may follow /rest/: a method's name, as clients write it (with or without ".view").
METHOD = re.compile(r"[A-Za-z0-9]+(\.view)?")
# The calls players make for "Instant Mix" / "Start radio", with the element their answer holds.
SIMILAR_SONGS = {"getSimilarSongs": "similarSongs", "getSimilarSongs2": "similarSongs2"}


@dataclass
class SubsonicSettings:
    """The upstream server, the account the pass-through reads its songs with, where its music
    folders lie among the catalog's paths (none: songs' paths matched as path suffixes), how
    often its songs are read again, and how long a client's accepted credentials are trusted."""

    url: str
    user: str
    password: str
    roots: list[str] = field(default_factory=list)
    sync_s: float = 900.0
    auth_cache_s: float = 60.0
    similar_songs: bool = True  # getSimilarSongs(2) answered from the catalog
    index_new: bool = True  # the files of songs the catalog lacks indexed (with roots only)
    mixes: bool = False  # sonic mixes kept as the sync account's playlists (see mixes.py)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"the Subsonic server's URL must be http(s)://HOST[:PORT][/PATH], got {self.url!r}"
            )
        if not self.user:
            raise InvalidArgumentError("the Subsonic pass-through needs a user of the server to read its songs with")
        if not self.sync_s >= 10:
            raise InvalidArgumentError(f"the sync interval must be at least 10 s, got {self.sync_s}")
        if not self.auth_cache_s >= 0:
            raise InvalidArgumentError(f"the credential cache time must be >= 0 s, got {self.auth_cache_s}")
        self.url = self.url.rstrip("/").removesuffix("/rest")
        self.roots = [os.path.abspath(os.path.expanduser(root)) for root in self.roots]


class PassThrough:
    def __init__(
        self,
        settings: SubsonicSettings,
        catalog: Callable[[], Catalog],
        lock: threading.Lock,
        index_options: Sequence[str] = (),
    ) -> None:
        """``index_options``: what `mertsearch index` needs besides the catalog to index new
        music as the server would embed it (--model, --device, --precision)."""
        self.settings, self.catalog, self.lock = settings, catalog, lock
        self.index_options = list(index_options)
        self.new_music: NewMusic | None = None
        self.mixes: Mixes | None = None
        self._pending: set[asyncio.Task] = set()  # scrobbles being checked (a task needs a reference)
        self.upstream: Upstream | None = None
        self.songs = SongMap()
        self.synced_at: float | None = None
        self._seen: tuple | None = None  # what the last full sync saw of both sides
        self.first_sync = asyncio.Event()

    @asynccontextmanager
    async def running(self):
        """Open the upstream's client and sync in the background: at once, then every
        ``sync_s``. The server answers meanwhile (a first sync of a million songs takes a
        minute or more); ``first_sync`` is set once the first one ended, well or not."""
        self.upstream = Upstream(
            self.settings.url,
            user=self.settings.user,
            password=self.settings.password,
            auth_cache_s=self.settings.auth_cache_s,
        )
        if self.settings.index_new and self.settings.roots:
            self.new_music = NewMusic(str(self.catalog().directory), self.settings.roots, self.index_options)
        if self.settings.mixes:
            self.mixes = Mixes(self.upstream, self.settings.user)
        task = asyncio.create_task(self._every())
        try:
            yield
        finally:
            task.cancel()
            await self.upstream.aclose()

    async def _every(self) -> None:
        ok = await self._sync_logged()
        self.first_sync.set()
        while True:
            await asyncio.sleep(self.settings.sync_s if ok else min(RETRY_S, self.settings.sync_s))
            ok = await self._sync_logged()

    async def _sync_logged(self) -> bool:
        """A sync (and the mixes' refresh) whose unexpected failure is logged whole, never the
        end of the syncs."""
        try:
            ok = await self.sync()
            if ok and self.mixes is not None:
                await self.refresh_mixes()
            return ok
        except Exception:  # noqa: BLE001 - the next sync may do better; the log says why this one failed
            log.exception("subsonic: the sync failed; trying again in %d s", RETRY_S)
            return False

    async def refresh_mixes(self) -> None:
        songs = self.songs

        def mix(seeds: list[str]):
            return asyncio.to_thread(self._locked, lambda: sonic.mix(self.catalog(), songs, seeds, MIX_SIZE))

        await self.mixes.refresh(songs, mix)

    def _heard(self, request: Request, params: dict[str, str]) -> None:
        """A scrobble of the sync account (a song played to its end, not "now playing") seeds
        its "recently played" mix, once the server accepts its credentials."""
        if params.get("u") != self.settings.user or not params.get("id"):
            return
        if params.get("submission", "true").lower() in ("false", "0"):
            return

        async def check() -> None:
            if await self.upstream.accepts(params, request.headers.get("authorization")) is None:
                self.mixes.heard(params["id"])

        task = asyncio.create_task(check())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def sync(self, *, full: bool = False) -> bool:
        """Match the upstream's songs to the catalog again, a page of songs at a time; unless
        ``full``, skipped while neither side changed (the upstream's last scan, the catalog's
        tracks) and less than a day passed. A sync that fails keeps the map in force (the
        server may be down a while), says why in the log and returns False. Then the files of
        new songs are indexed, where that is on."""
        try:
            store = self.catalog().store
            stamp = await self.upstream.last_modified()
            seen = (stamp, await asyncio.to_thread(catalog_state, store))
            recent = time.time() - (self.synced_at or 0) < FULL_SYNC_S
            if not full and stamp is not None and seen == self._seen and recent:
                log.debug("subsonic: neither the server's songs nor the catalog changed")
                return True
            # Off the event loop, which goes on serving: building the look-ups over the catalog's
            # tracks, and each page's matching (tens of milliseconds).
            matcher = await asyncio.to_thread(lambda: Matcher(catalog_tracks(store), self.settings.roots))
            async for page in self.upstream.pages():
                await asyncio.to_thread(lambda page=page: [matcher.add(song) for song in page])
            self.songs, self._seen, self.synced_at = matcher.songs, seen, time.time()
            log.info("subsonic: %d of %d songs matched to the catalog %s", len(self.songs), matcher.seen, self.songs.by)
            if self.new_music is not None and matcher.missing:
                failed = await asyncio.to_thread(lambda: {f.path for f in store.failures()})
                files = await asyncio.to_thread(self.new_music.files, matcher.missing, failed)
                self.new_music.start(files, self._sync_logged)
            return True
        except MertSearchError as exc:
            log.warning("subsonic: songs not synced: %s", exc)
            return False

    def status(self) -> dict:
        """For /health: the songs matched, when, and the indexing of new music."""
        synced = self.synced_at and time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.synced_at))
        answer = {"songs": len(self.songs), "synced": synced}
        if self.new_music is not None:
            answer["indexing"] = self.new_music.as_dict()
        return answer

    def add_routes(self, app: FastAPI) -> None:
        @app.api_route("/rest/{name:path}", methods=["GET", "POST", "HEAD"], include_in_schema=False)
        async def rest(request: Request, name: str) -> Response:
            # Only the API's methods reach the upstream: no other path of its host (its own web
            # page, its native API), however the name is spelt ("..", encoded slashes).
            if not METHOD.fullmatch(name):
                return Response("not found", status_code=404, media_type="text/plain", headers=responses.NOSNIFF)
            params = await _params(request)
            fmt = Format(params.get("f"), params.get("callback"))
            if not fmt.valid:  # never reflected, nor sent on for the upstream to reflect
                return responses.error(fmt, responses.GENERIC, "callback must be a JavaScript identifier")
            method = name.removesuffix(".view")
            if method in ("getSonicSimilarTracks", "findSonicPath"):
                return await self.answer(request, method, params, fmt)
            if method in SIMILAR_SONGS and self.settings.similar_songs:
                return await self.similar_songs(request, name, method, params, fmt)
            if method == "scrobble" and self.mixes is not None:
                self._heard(request, params)
            if method == "getOpenSubsonicExtensions":
                return await self.extensions(request, name, fmt)
            return await self.upstream.forward(request, name)

    async def extensions(self, request: Request, name: str, fmt: Format) -> Response:
        try:
            answer = await self.upstream.send(request, name, identity=True)
            try:
                body = responses.with_extension(await answer.aread(), fmt)
            finally:
                await answer.aclose()
        except Exception:  # noqa: BLE001 - any failure upstream: this list is still ours to give
            body = None
        if body is None:  # a server without OpenSubsonic: the list is this one extension
            return responses.ok(fmt, openSubsonicExtensions=[responses.EXTENSION])
        media_type = answer.headers.get("content-type")
        return Response(body, status_code=answer.status_code, media_type=media_type, headers=responses.NOSNIFF)

    async def answer(self, request: Request, method: str, params: dict[str, str], fmt: Format) -> Response:
        songs = self.songs  # one map for the whole answer, whatever a sync replaces meanwhile
        synced = self.synced_at is not None

        def work():
            if method == "getSonicSimilarTracks":
                song = _song(songs, params, "id", synced=synced)
                count = _count(params, 10, least=0)
                return lambda: sonic.similar(self.catalog(), songs, song, count) if count else []
            start = _song(songs, params, "startSongId", synced=synced)
            end = _song(songs, params, "endSongId", synced=synced)
            count = _count(params, 25, least=1)
            if count < 2 and start != end:
                raise _Refused(responses.GENERIC, "count must be at least 2 for a path between two songs")
            return lambda: sonic.path(self.catalog(), songs, start, end, count)

        matches = await self._from_catalog(request, params, fmt, work)
        if isinstance(matches, Response):
            return matches
        return responses.ok(fmt, sonicMatch=[{"entry": entry, "similarity": s} for entry, s in matches])

    async def similar_songs(self, request: Request, name: str, method: str, params: dict[str, str], fmt: Format):
        """An Instant Mix from the catalog, in the upstream's own answer's shape; the upstream's
        answer where the catalog knows none of the songs the id names (or no id is given)."""
        songs = self.songs
        # Either call, any kind of id: Tempo, Amperfy, Supersonic and Navidrome's own page ask
        # getSimilarSongs2 with a song's (Navidrome answers both alike).
        seeds = songs.seeds(params.get("id") or "")
        if not seeds:
            return await self.upstream.forward(request, name)

        def work():
            count = _count(params, 50, least=0)
            return lambda: sonic.mix(self.catalog(), songs, seeds, count) if count else []

        entries = await self._from_catalog(request, params, fmt, work)
        if isinstance(entries, Response):
            return entries
        return responses.ok(fmt, **{SIMILAR_SONGS[method]: {"song": entries}})

    async def _from_catalog(self, request: Request, params: dict[str, str], fmt: Format, work):
        """For a client the upstream accepts: ``work()`` checks the parameters and gives the
        catalog's work, run in a thread under the catalog's lock; its result, or the Subsonic
        error (a Response) for refused credentials or parameters."""
        refused = await self.upstream.accepts(params, request.headers.get("authorization"))
        if refused is not None:
            return responses.error(fmt, *refused)
        try:
            return await asyncio.to_thread(self._locked, work())
        except _Refused as exc:
            return responses.error(fmt, exc.code, exc.message)
        except InvalidArgumentError as exc:
            return responses.error(fmt, responses.GENERIC, str(exc))

    def _locked(self, work):
        with self.lock:
            return work()


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _song(songs: SongMap, params: dict[str, str], name: str, *, synced: bool = True) -> str:
    if not params.get(name):
        raise _Refused(responses.MISSING_PARAMETER, f"required parameter is missing: {name}")
    if not synced:
        raise _Refused(responses.GENERIC, "the server's songs are being matched to the catalog; try again shortly")
    if params[name] not in songs.track_of:
        raise _Refused(responses.NOT_FOUND, f"song {params[name]} not found in the similarity catalog")
    return params[name]


def _count(params: dict[str, str], default: int, *, least: int) -> int:
    text = params.get("count")
    if text in (None, ""):
        return default
    try:
        count = int(text)
    except ValueError:
        raise _Refused(responses.GENERIC, f"count must be a whole number, got {text!r}") from None
    if not least <= count <= MAX_COUNT:
        raise _Refused(responses.GENERIC, f"count must be between {least} and {MAX_COUNT}, got {count}")
    return count


async def _params(request: Request) -> dict[str, str]:
    """The request's parameters: its query string and, for a form POST (the formPost
    extension), its form, read the same way for every endpoint."""
    params = dict(request.query_params)
    kind = request.headers.get("content-type", "")
    if request.method == "POST" and kind.startswith("application/x-www-form-urlencoded"):
        await request.body()  # kept, so that the request can still be sent on whole
        params.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    return params
