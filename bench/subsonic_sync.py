"""The Subsonic pass-through's song-map sync at scale: how long ``PassThrough.sync()`` takes over a
large library, how many requests it sends the upstream, and the memory it needs and keeps.

The upstream is a fake Subsonic server (uvicorn, in a thread of this process) that answers the
JSON API a sync may use (ping, getMusicFolders, search3, getIndexes and getArtists with
lastModified and ifModifiedSince, getAlbumList2, getAlbum, getSong) with Child objects shaped like
Supysonic 0.7.9's, plus coverArt and the OpenSubsonic musicBrainzId that Navidrome sends; tags are
varied, many of them not ASCII; 20 songs an album, 5 albums an artist. It answers from memory,
each song's JSON encoded once: the figures are the sync's own cost (a real server adds its own
time to every request). Every hundredth song is a file only the upstream holds (99,000 of 100,000
songs match); the other songs' paths are the catalog's tracks' paths under ``--root``.

Three syncs run in a fresh process, one after the other: the first, one with the upstream
unchanged, and one after a simulated rescan that added ``--added`` songs (new albums, whose files
are catalog tracks the upstream lacked until then, so ``matched`` grows by as many as the catalog
has tracks for) and moved the library's lastModified. They run twice, in two processes: untraced
for the time, the requests and the resident memory (VmHWM, reset before each sync), then under
tracemalloc for the peak of Python's allocations during each sync and what stays allocated after
it (gc run), both over what was allocated before the first sync. SQLite's own memory is in the
resident figures only.

``--catalog`` is an existing catalog, read through a read-only connection (never changed, never
brought up to date); without it a catalog of ``--songs`` tracks (paths and tags only) is made in a
temporary folder. Of the pass-through, only its constructor, its ``upstream`` client,
``PassThrough.sync()`` and ``len(passthrough.songs)`` (the songs matched) are relied on: a sync
that works otherwise inside is measured the same way.

    .venv/bin/python bench/subsonic_sync.py [--songs 100000] [--added 100] [--json]
    .venv/bin/python bench/subsonic_sync.py --catalog /work/scale/100000 --root /synthetic
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import mimetypes
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import insert, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_facts  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.catalog.layout import DATABASE  # noqa: E402
from mertsearch.storage.manifest import read_manifest  # noqa: E402
from mertsearch.storage.schema import Track  # noqa: E402
from mertsearch.subsonic import PassThrough, SubsonicSettings  # noqa: E402
from mertsearch.subsonic.upstream import Upstream  # noqa: E402
from tests.servers import serving  # noqa: E402

USER, PASSWORD = "bench", "bench pass"
VERSION = "1.12.0"  # what Supysonic 0.7.9 answers
SONGS_PER_ALBUM, ALBUMS_PER_ARTIST = 20, 5
UPSTREAM_ONLY_EVERY = 100
IGNORED_ARTICLES = "El La Le Las Les Los The"  # Supysonic's default
NAMESPACE = uuid.UUID("6d657274-7365-6172-6368-73796e630000")
ARTISTS = ["Beyoncé", "Кино", "坂本龍一", "Sigur Rós", "The Beatles", "Мумий Тролль", "宇多田ヒカル", "Björk"]
ARTISTS += ["Motörhead", "Zoë Keating", "Los Fabulosos Cadillacs", "방탄소년단", "Ólafur Arnalds", "Nick Drake"]
ALBUMS = ["Группа крови", "Ágætis byrjun", "夜の歌", "Abbey Road", "Homogenic", "Straße der Lieder", "Pink Moon"]
TITLES = ["Café", "Звезда", "夜明け", "Naïve", "Hoppípolla", "Sonata", "Überall", "Señorita", "Ночь", "花火", "Rain"]
GENRES = ["Rock", "Électronique", "Поп", "J-Pop", "Jazz", "Hip-Hop", "Post-rock", "Folk"]


# --- the library -------------------------------------------------------------------------------


def catalog_row(n: int, songs: int) -> int | None:
    """Which catalog track (by position) upstream song number ``n`` is; None for a file only the
    upstream holds (a demo: every hundredth song). Songs a rescan adds (numbers from ``songs`` on)
    are the catalog tracks left out so far, so a sync that sees them matches every one."""
    if n >= songs:
        return UPSTREAM_ONLY_EVERY * (n - songs) + UPSTREAM_ONLY_EVERY - 1
    return None if n % UPSTREAM_ONLY_EVERY == UPSTREAM_ONLY_EVERY - 1 else n


def song_at(row: int, songs: int, added: int) -> int:
    """The song number whose file a built catalog's ``row``-th track is (catalog_row's inverse)."""
    later = row // UPSTREAM_ONLY_EVERY
    return songs + later if row % UPSTREAM_ONLY_EVERY == UPSTREAM_ONLY_EVERY - 1 and later < added else row


def tags(n: int, *, demo: bool = False) -> dict:
    album = n // SONGS_PER_ALBUM
    artist = album // ALBUMS_PER_ARTIST
    title = f"{TITLES[n % len(TITLES)]} {n}" + (" (demo)" if demo else "")  # a demo is another recording
    return {
        "artist": f"{ARTISTS[artist % len(ARTISTS)]} {artist}",
        "album": f"{ALBUMS[album % len(ALBUMS)]} {album}",
        "title": title,
        "track": n % SONGS_PER_ALBUM + 1,
        "year": 1960 + album % 64,
        "genre": GENRES[album % len(GENRES)],
        "duration": 120 + n * 37 % 300,
    }


def own_path(t: dict) -> str:
    return f"{t['artist']}/{t['album']}/{t['track']:02d} {t['title']}.flac"


def build_catalog(directory: Path, root: str, songs: int, added: int) -> None:
    """A catalog with only what the sync reads of its tracks (paths, tags, durations): rows
    written straight into its table, no audio and no vectors."""
    rows = []
    for row in range(songs):
        t = tags(song_at(row, songs, added))
        rows.append(
            {
                "path": f"{root}/{own_path(t)}",
                **{k: t[k] for k in ("title", "artist", "album", "genre", "year", "duration")},
                "size": 0,
                "mtime_ns": 0,
                "sha256": f"{row:064x}",
                "vector": b"",
                "indexed_at": 0.0,
            }
        )
    with Catalog.create(directory, model="spectral") as cat, cat.store.session() as session, session.begin():
        session.execute(insert(Track), rows)


def open_catalog(directory: Path) -> Catalog:
    """The catalog in ``directory`` through a read-only connection to its SQLite database.
    Catalog.open has no read-only mode and brings an older database up to date as it opens
    (indexes, text index, folded tags): a kept catalog must not be changed by a benchmark.
    ``immutable`` also leaves no -wal or -shm file behind, and reads no WAL: refused when one
    holds writes."""
    database, manifest = directory / DATABASE, read_manifest(directory)
    wal = database.with_name(database.name + "-wal")
    if not database.is_file() or manifest is None:
        raise SystemExit(f"{directory} is not a catalog with its database in {DATABASE}")
    if wal.is_file() and wal.stat().st_size:
        raise SystemExit(f"{wal} holds writes not yet in the database: is the catalog being written?")
    url = f"sqlite:///file:{quote(str(database.absolute()))}?mode=ro&immutable=1&uri=true"
    return Catalog(directory, manifest, checkpoint=None, device=None, batch_size=None, database=url)


def catalog_paths(directory: Path, root: str) -> list[str]:
    """The catalog's track paths under ``root``, relative to it, in the order of their ids."""
    with open_catalog(directory) as cat, cat.store.session() as session:
        paths = session.scalars(select(Track.path).order_by(Track.id)).all()
    return [path[len(root) + 1 :] for path in paths if path.startswith(root + "/")]


# --- the fake upstream -------------------------------------------------------------------------


class FakeUpstream:
    """The songs a Subsonic server holds, its answers, and how many requests of each method it
    has had. Credentials are not checked."""

    def __init__(self, paths: list[str], songs: int, added: int) -> None:
        self.paths, self.total, self.added = paths, songs, added
        self.requests: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """The library as first scanned, a day ago (an album a second, for getAlbumList2's newest)."""
        self.scanned = int(time.time()) - 86400
        self.folders: dict[str, str] = {}  # artist id -> its folder's id
        self.songs = [self.child(n, self.scanned + n // SONGS_PER_ALBUM) for n in range(self.total)]
        self.encoded = [encode(song) for song in self.songs]
        self.last_modified = (self.scanned + self.total // SONGS_PER_ALBUM + 1) * 1000
        self.requests.clear()
        self.index()

    def rescan(self) -> None:
        """A scan that found ``added`` new files: the songs list them last (Supysonic's search3
        lists in the order songs were added), created now, and lastModified moves."""
        now = max(int(time.time()), self.last_modified // 1000 + 1)
        new = [self.child(n, now) for n in range(self.total, self.total + self.added)]
        self.songs += new
        self.encoded += [encode(song) for song in new]
        self.last_modified = now * 1000
        self.index()

    def child(self, n: int, created: int) -> dict:
        """Song number ``n`` as a Child object: every field Supysonic 0.7.9 sends for a song
        without stars or ratings, plus coverArt and musicBrainzId."""
        row = catalog_row(n, self.total)
        t = tags(n, demo=row is None)
        path = self.paths[row] if row is not None and row < len(self.paths) else own_path(t)
        album, artist = n // SONGS_PER_ALBUM, n // SONGS_PER_ALBUM // ALBUMS_PER_ARTIST
        artist_id = str(uuid.uuid5(NAMESPACE, f"artist {artist}"))
        # Supysonic's folders have integer ids in scan order: an artist's, then its albums'.
        artist_folder = 2 + artist * (ALBUMS_PER_ARTIST + 1)
        self.folders[artist_id] = str(artist_folder)
        folder = str(artist_folder + 1 + album % ALBUMS_PER_ARTIST)
        bitrate = 700 + n * 13 % 400
        return {
            "id": str(uuid.uuid5(NAMESPACE, f"song {n} {row}")),
            "parent": folder,
            "isDir": False,
            "title": t["title"],
            "album": t["album"],
            "artist": t["artist"],
            "track": t["track"],
            "year": t["year"],
            "genre": t["genre"],
            "coverArt": folder,
            "size": t["duration"] * bitrate * 125,
            "contentType": mimetypes.guess_type(path, strict=False)[0] or "application/octet-stream",
            "suffix": path.rsplit(".", 1)[-1].lower(),
            "duration": t["duration"],
            "bitRate": bitrate,
            "path": path,
            "isVideo": False,
            "discNumber": 1,
            "created": datetime.fromtimestamp(created).isoformat(),
            "albumId": str(uuid.uuid5(NAMESPACE, f"album {album}")),
            "artistId": artist_id,
            "type": "music",
            "musicBrainzId": str(uuid.uuid5(NAMESPACE, f"recording {n}")),
        }

    def index(self) -> None:
        """Albums and artists of the songs held now."""
        self.by_id = {song["id"]: i for i, song in enumerate(self.songs)}
        self.albums: dict[str, dict] = {}
        self.artists: dict[str, dict] = {}
        for i, song in enumerate(self.songs):
            album = self.albums.get(song["albumId"])
            if album is None:
                album = self.albums[song["albumId"]] = {
                    **{k: song[k] for k in ("artist", "artistId", "created", "year", "genre", "coverArt")},
                    "id": song["albumId"],
                    "name": song["album"],
                    "songCount": 0,
                    "duration": 0,
                    "_songs": [],
                }
                artist = self.artists.setdefault(
                    song["artistId"], {"id": song["artistId"], "name": song["artist"], "albumCount": 0}
                )
                artist["albumCount"] += 1
            album["songCount"] += 1
            album["duration"] += song["duration"]
            album["created"] = min(album["created"], song["created"])
            album["_songs"].append(i)

    def answer(self, method: str, params: dict) -> Response:
        self.requests[method] += 1
        if method == "ping":
            return ok({})
        if method == "getMusicFolders":
            return ok({"musicFolders": {"musicFolder": [{"id": "1", "name": "Music"}]}})
        if method == "search3":
            return self.search3(params)
        if method in ("getIndexes", "getArtists"):
            since = params.get("ifModifiedSince")
            body = {"lastModified": self.last_modified, "ignoredArticles": IGNORED_ARTICLES}
            # As Supysonic's getIndexes: a library not changed since then is answered without the list.
            if not (since and self.last_modified < int(since)):
                body["index"] = self.artist_index(method == "getIndexes")
            return ok({"indexes" if method == "getIndexes" else "artists": body})
        if method == "getAlbumList2":
            order = {
                "newest": lambda a: a["created"],
                "alphabeticalByName": lambda a: a["name"].lower(),
                "alphabeticalByArtist": lambda a: (a["artist"].lower(), a["name"].lower()),
            }
            if params.get("type") not in order:
                return failed(0, "Unknown search type")
            albums = sorted(self.albums.values(), key=order[params["type"]], reverse=params["type"] == "newest")
            start, size = int(params.get("offset") or 0), min(int(params.get("size") or 10), 500)
            return ok({"albumList2": {"album": [public(a) for a in albums[start : start + size]]}})
        if method == "getAlbum":
            album = self.albums.get(params.get("id", ""))
            if album is None:
                return failed(70, "Album not found")
            return ok({"album": {**public(album), "song": [public(self.songs[i]) for i in album["_songs"]]}})
        if method == "getSong":
            if params.get("id") not in self.by_id:
                return failed(70, "Track not found")
            return ok({"song": public(self.songs[self.by_id[params["id"]]])})
        return failed(0, f"unknown method {method}")

    def search3(self, params: dict) -> Response:
        """As Supysonic's: artists, albums and songs whose name contains the query, in the order
        they were added, a window of each."""
        query = params.get("query", "")

        def window(items, kind: str):
            start = int(params.get(f"{kind}Offset") or 0)
            return items[start : start + int(params.get(f"{kind}Count") or 20)]

        artists = window([public(a) for a in self.artists.values() if query in a["name"]], "artist")
        albums = window([public(a) for a in self.albums.values() if query in a["name"]], "album")
        everything = range(len(self.songs))  # the empty query, without looking at each song
        songs = window([i for i in everything if query in self.songs[i]["title"]] if query else everything, "song")
        # Each song's JSON is made once: a page of 500 is joined, not encoded again. Empty lists
        # are left out, as Supysonic's formatter does.
        parts = [encode({"artist": artists})[1:-1]] if artists else []
        parts += [encode({"album": albums})[1:-1]] if albums else []
        parts += ['"song":[' + ",".join(self.encoded[i] for i in songs) + "]"] if songs else []
        text = f'{{"subsonic-response":{{"searchResult3":{{{",".join(parts)}}},"status":"ok","version":"{VERSION}"}}}}'
        return Response(text, media_type="application/json")

    def artist_index(self, folders: bool) -> list[dict]:
        """Artists by first letter as Supysonic groups them: articles aside, digits "#", other
        than A-Z "?"; getIndexes lists artists' folders, getArtists the artists."""
        groups: dict[str, list[tuple[str, dict]]] = {}
        for artist in self.artists.values():
            name = re.sub(rf"^({'|'.join(IGNORED_ARTICLES.split())}) ", "", artist["name"], flags=re.I)
            letter = name[0].upper()
            letter = "#" if letter.isdigit() else letter if "A" <= letter <= "Z" else "?"
            entry = {"id": self.folders[artist["id"]], "name": artist["name"]} if folders else artist
            groups.setdefault(letter, []).append((name.lower(), entry))
        return [{"name": k, "artist": [e for _, e in sorted(v, key=lambda x: x[0])]} for k, v in sorted(groups.items())]

    def app(self) -> Starlette:
        async def rest(request: Request) -> Response:
            return self.answer(request.path_params["method"].removesuffix(".view"), dict(request.query_params))

        async def requests(_request: Request) -> Response:
            return JSONResponse({"requests": dict(self.requests), "songs": len(self.songs)})

        async def rescan(_request: Request) -> Response:
            self.rescan()
            return JSONResponse({"songs": len(self.songs), "lastModified": self.last_modified})

        return Starlette(
            routes=[
                Route("/rest/{method}", rest, methods=["GET", "POST"]),
                # The bench's own controls: not counted.
                Route("/bench/requests", requests),
                Route("/bench/rescan", rescan, methods=["POST"]),
            ]
        )


def public(item: dict) -> dict:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def ok(body: dict) -> Response:
    return reply({**body, "status": "ok"})


def failed(code: int, message: str) -> Response:
    return reply({"error": {"code": code, "message": message}, "status": "failed"})


def reply(inner: dict) -> Response:
    return Response(encode({"subsonic-response": {**inner, "version": VERSION}}), media_type="application/json")


def encode(value) -> str:
    """JSON as Flask sends it for Supysonic: keys sorted, non-ASCII escaped, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- the syncs, measured in a process of their own ---------------------------------------------


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class Warnings(logging.Handler):
    """What the sync logs at WARNING and above: a failed sync says why there, and only there."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def syncs(url: str, catalog: Path, root: str, traced: bool) -> dict:
    warnings = Warnings()
    logging.getLogger("mertsearch").addHandler(warnings)
    cat = open_catalog(catalog)
    settings = SubsonicSettings(url=url, user=USER, password=PASSWORD, roots=[root])
    passthrough = PassThrough(settings, lambda: cat, threading.Lock())
    passthrough.upstream = Upstream(url, user=USER, password=PASSWORD)
    control = httpx.Client(base_url=url, timeout=60)
    gc.collect()
    if traced:
        tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    rss_before = memory_kb("VmRSS")
    rows = []
    for name in ("first", "unchanged", "after rescan"):
        if name == "after rescan":
            control.post("/bench/rescan").raise_for_status()
        before = control.get("/bench/requests").json()
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here: this sync's peak
        tracemalloc.reset_peak()
        started = time.perf_counter()
        await passthrough.sync()
        seconds = time.perf_counter() - started
        traced_peak, rss_peak = tracemalloc.get_traced_memory()[1], memory_kb("VmHWM")
        after = control.get("/bench/requests").json()
        gc.collect()
        requests = Counter(after["requests"]) - Counter(before["requests"])
        rows.append(
            {
                "sync": name,
                "songs": after["songs"],
                "matched": len(passthrough.songs),
                "seconds": round(seconds, 3),
                "requests": sum(requests.values()),
                "by_method": dict(requests),
                "rss_peak_mb": round((rss_peak - rss_before) / 1024, 1),
                "rss_after_mb": round((memory_kb("VmRSS") - rss_before) / 1024, 1),
                "traced_peak_mb": round((traced_peak - traced_before) / 2**20, 1),
                "retained_mb": round((tracemalloc.get_traced_memory()[0] - traced_before) / 2**20, 1),
            }
        )
    await passthrough.upstream.aclose()
    return {"rows": rows, "warnings": warnings.messages}


def measured(url: str, catalog: Path, root: str, traced: bool) -> dict:
    job = json.dumps({"url": url, "catalog": str(catalog), "root": root, "traced": traced})
    done = subprocess.run([sys.executable, __file__, "--syncs", job], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the syncs failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, help="an existing catalog, read only (default: one made for the run)")
    parser.add_argument("--root", help="the upstream's music folder as the catalog's paths name it (default: /music)")
    parser.add_argument("--songs", type=int, default=100_000, help="songs the upstream holds at first")
    parser.add_argument("--added", type=int, default=100, help="songs the rescan before the third sync adds")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--syncs", help=argparse.SUPPRESS)  # the measuring process
    args = parser.parse_args()
    if args.syncs:
        job = json.loads(args.syncs)
        print(json.dumps(asyncio.run(syncs(job["url"], Path(job["catalog"]), job["root"], job["traced"]))))
        return
    if args.catalog and not args.root:
        parser.error("--catalog needs --root")
    root = (args.root or "/music").rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        catalog = args.catalog or Path(tmp) / "catalog"
        if not args.catalog:
            build_catalog(catalog, root, args.songs, args.added)
        paths = catalog_paths(catalog, root)
        if not paths:
            raise SystemExit(f"no track of {catalog} is under {root}")
        upstream = FakeUpstream(paths, args.songs, args.added)
        prepare_s = time.perf_counter() - started
        with serving(upstream.app(), "the fake upstream") as url:
            plain = measured(url, catalog, root, traced=False)
            upstream.reset()
            traced = measured(url, catalog, root, traced=True)
    rows = plain["rows"]
    # The untraced process's tracemalloc figures are zeros: the traced run's take their place.
    for row, other in zip(rows, traced["rows"], strict=True):
        row.update({k: other[k] for k in ("traced_peak_mb", "retained_mb")}, matched_traced=other["matched"])
    report = {
        "machine": cpu_facts(),
        "catalog": str(args.catalog or "built for the run"),
        "catalog_tracks_under_root": len(paths),
        "root": root,
        "songs": args.songs,
        "added": args.added,
        "prepare_s": round(prepare_s, 1),
        "syncs": rows,
        "warnings": plain["warnings"] + traced["warnings"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['machine']}; catalog {report['catalog']}, {len(paths)} tracks under {root}")
    print(
        f"{'sync':14} {'songs':>8} {'matched':>8} {'time s':>8} {'requests':>9} {'RSS peak':>9} "
        f"{'RSS after':>10} {'traced peak':>12} {'retained':>9}   (memory in MB over the first sync's start)"
    )
    for row in rows:
        print(
            f"{row['sync']:14} {row['songs']:8} {row['matched']:8} {row['seconds']:8.2f} {row['requests']:9} "
            f"{row['rss_peak_mb']:9.1f} {row['rss_after_mb']:10.1f} {row['traced_peak_mb']:12.1f} "
            f"{row['retained_mb']:9.1f}"
        )
    for message in report["warnings"]:
        print(f"warning: {message}")


if __name__ == "__main__":
    main()
