"""The Subsonic pass-through in front of a real Supysonic server: requests and streams go through
unchanged, and the sonicSimilarity endpoints answer with the upstream's own songs."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import logging
import shutil
import threading
import time
import xml.etree.ElementTree as ET

import httpx
import libsonic
import pytest
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.cli import app
from mertsearch.errors import InvalidArgumentError
from mertsearch.subsonic import SubsonicSettings
from mertsearch.subsonic.mapping import CatalogTrack, match
from mertsearch.subsonic.responses import Format, with_extension
from tests.helpers import SAMPLE_RATE, melody_track, write_audio
from tests.servers import free_port, running
from tests.subsonic_library import AUTH, served_library, tag
from tests.supysonic import PASSWORD, USER, scan, supysonic

NS = "{http://subsonic.org/restapi}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The served library (tests/subsonic_library.py): (proxy URL, upstream URL, upstream songs by
    title, music folder, catalog)."""
    with served_library(tmp_path_factory.mktemp("subsonic")) as served:
        yield served


def _json(url: str, method: str, **params) -> dict:
    answer = httpx.get(f"{url}/rest/{method}", params={**AUTH, "f": "json", **params}, timeout=60)
    assert answer.status_code == 200
    return answer.json()["subsonic-response"]


def test_requests_pass_through_unchanged(setup):
    proxy, upstream, _, _, _ = setup
    for method, params in [
        ("ping.view", {}),
        ("getMusicFolders", {"f": "json"}),
        ("search3", {"f": "json", "query": "tune", "songCount": 3}),
        ("getSong", {"id": "not-an-id"}),
        ("ping", {"p": "wrong"}),
    ]:
        direct = httpx.get(f"{upstream}/rest/{method}", params={**AUTH, **params})
        through = httpx.get(f"{proxy}/rest/{method}", params={**AUTH, **params})
        assert (through.status_code, through.content) == (direct.status_code, direct.content), method
        assert through.headers["content-type"] == direct.headers["content-type"]
        assert len(through.headers.get_list("server")) == 1  # the pass-through's, not both
    # Form parameters (POST) and the Subsonic client library.
    client = libsonic.Connection("http://127.0.0.1", USER, PASSWORD, port=int(proxy.rsplit(":", 1)[1]), legacyAuth=True)
    assert client.ping()
    assert client.getMusicFolders()["musicFolders"]["musicFolder"][0]["name"] == "Music"


def test_streams_pass_through_whole_and_in_ranges(setup):
    proxy, upstream, songs, music, _ = setup
    data = (music / "Long" / "long.wav").read_bytes()
    params = {**AUTH, "id": songs["long"]["id"]} if "long" in songs else None
    if params is None:  # a WAV without a title tag is listed under its file name
        song = next(s for s in songs.values() if s.get("path", "").endswith("long.wav"))
        params = {**AUTH, "id": song["id"]}
    with httpx.stream("GET", f"{proxy}/rest/stream", params=params) as through:
        assert through.status_code == 200
        assert through.headers["content-length"] == str(len(data))
        assert hashlib.sha256(through.read()).digest() == hashlib.sha256(data).digest()
    direct = httpx.get(f"{upstream}/rest/download", params=params, headers={"Range": "bytes=1000-1999"})
    ranged = httpx.get(f"{proxy}/rest/download", params=params, headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == direct.status_code == 206
    assert ranged.headers["content-range"] == direct.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert ranged.content == data[1000:2000]


def test_extensions_gain_sonic_similarity(setup):
    proxy, _, _, _, _ = setup
    answer = _json(proxy, "getOpenSubsonicExtensions")
    assert answer["status"] == "ok" and {"name": "sonicSimilarity", "versions": [1]} in answer["openSubsonicExtensions"]
    root = ET.fromstring(httpx.get(f"{proxy}/rest/getOpenSubsonicExtensions.view", params=AUTH).content)
    added = [e for e in root.iter(f"{NS}openSubsonicExtensions") if e.get("name") == "sonicSimilarity"]
    assert root.get("status") == "ok" and [v.text for v in added[0].iter(f"{NS}versions")] == ["1"]


def test_an_upstream_list_of_extensions_keeps_its_own():
    """The spec's example answer (with the extension left out), as JSON and as XML."""
    spec = (
        '{"subsonic-response":{"status":"ok","version":"1.16.1","openSubsonic":true,'
        '"openSubsonicExtensions":[{"name":"template","versions":[1,2]}]}}'
    )
    import json

    extended = json.loads(with_extension(spec.encode(), Format("json")))["subsonic-response"]
    assert extended["openSubsonicExtensions"] == [
        {"name": "template", "versions": [1, 2]},
        {"name": "sonicSimilarity", "versions": [1]},
    ]
    xml = (
        '<subsonic-response xmlns="http://subsonic.org/restapi" status="ok" version="1.16.1">'
        '<openSubsonicExtensions name="template"><versions>1</versions><versions>2</versions>'
        "</openSubsonicExtensions></subsonic-response>"
    )
    root = ET.fromstring(with_extension(xml.encode(), Format(None)))
    assert [e.get("name") for e in root.iter(f"{NS}openSubsonicExtensions")] == ["template", "sonicSimilarity"]
    failed = b'{"subsonic-response":{"status":"failed","error":{"code":0}}}'
    assert with_extension(failed, Format("json")) is None


def test_similar_tracks_are_the_upstreams_songs(setup):
    proxy, _, songs, _, _ = setup
    answer = _json(proxy, "getSonicSimilarTracks", id=songs["echo"]["id"], count=3)
    assert answer["status"] == "ok"
    matches = answer["sonicMatch"]
    assert [m["entry"]["title"] for m in matches][0] == "tune0"  # it starts with tune0's first 14 s
    assert len(matches) == 3 and all(m["entry"] == songs[m["entry"]["title"]] for m in matches)
    similarities = [m["similarity"] for m in matches]
    assert all(0 <= s <= 1 for s in similarities) and similarities == sorted(similarities, reverse=True)
    # Every song the catalog knows, never the one only upstream nor the one only in the catalog;
    # tune2 by its own file, whichever of its recording's files the catalog's result shows.
    everything = _json(proxy, "getSonicSimilarTracks", id=songs["tune3"]["id"], count=100)["sonicMatch"]
    assert sorted(m["entry"]["title"] for m in everything) == sorted(
        ["echo", *(f"tune{n}" for n in range(7) if n != 3)]
    )
    # XML, and a Subsonic client library posting a form.
    root = ET.fromstring(
        httpx.get(f"{proxy}/rest/getSonicSimilarTracks", params={**AUTH, "id": songs["echo"]["id"], "count": 3}).content
    )
    shown = [(m.find(f"{NS}entry").get("title"), float(m.get("similarity"))) for m in root.iter(f"{NS}sonicMatch")]
    assert shown == [(m["entry"]["title"], m["similarity"]) for m in matches]
    client = libsonic.Connection("http://127.0.0.1", USER, PASSWORD, port=int(proxy.rsplit(":", 1)[1]), legacyAuth=True)
    posted = client._doInfoReq(
        client._getRequest("getSonicSimilarTracks.view", {"id": songs["echo"]["id"], "count": 3})
    )
    assert posted["sonicMatch"] == matches


def test_sonic_errors_are_subsonic_errors(setup):
    proxy, _, songs, _, _ = setup
    cases = [
        ({"id": songs["extra"]["id"]}, 70),  # upstream only: not in the catalog
        ({"id": "no-such-song"}, 70),
        ({}, 10),
        ({"id": songs["tune1"]["id"], "count": "many"}, 0),
        ({"id": songs["tune1"]["id"], "p": "wrong"}, 40),
    ]
    for params, code in cases:
        answer = _json(proxy, "getSonicSimilarTracks", **params)
        assert answer["status"] == "failed" and answer["error"]["code"] == code, params
    root = ET.fromstring(httpx.get(f"{proxy}/rest/findSonicPath", params={**AUTH, "startSongId": "x"}).content)
    assert root.get("status") == "failed" and root.find(f"{NS}error").get("code") in ("10", "70")


def test_sonic_path_runs_from_start_to_end(setup):
    proxy, _, songs, _, _ = setup
    start, end = songs["tune1"], songs["tune5"]
    path = _json(proxy, "findSonicPath", startSongId=start["id"], endSongId=end["id"], count=5)["sonicMatch"]
    assert len(path) == 5 and path[0]["entry"] == start and path[-1]["entry"] == end
    assert len({m["entry"]["id"] for m in path}) == 5 and path[0]["similarity"] == 1.0
    # Similarity is to the start, as getSonicSimilarTracks of the start gives it.
    to_start = _json(proxy, "getSonicSimilarTracks", id=start["id"], count=100)["sonicMatch"]
    expected = {m["entry"]["id"]: m["similarity"] for m in to_start}
    for step in path[1:]:
        assert step["similarity"] == pytest.approx(expected[step["entry"]["id"]], abs=1e-4)
    # More songs than the catalog holds: the longest path it can make.
    longest = _json(proxy, "findSonicPath", startSongId=start["id"], endSongId=end["id"], count=50)["sonicMatch"]
    assert 2 <= len(longest) <= 8 and longest[0]["entry"] == start and longest[-1]["entry"] == end


def test_songs_map_by_path_musicbrainz_then_tags():
    tracks = [
        CatalogTrack(1, "/m/A/x.flac", None, "A", "X", 100.0),
        CatalogTrack(2, "/n/A/x.flac", None, "A", "X", 300.0),  # same relative path elsewhere
        CatalogTrack(3, "/m/B/y.flac", "MB-3", "B", "Y", 50.0),
        CatalogTrack(4, "/m/C/z.ogg", None, "C", "Zed", 200.0),
    ]
    songs = [
        {"id": "s1", "path": "A/x.flac", "duration": 100},
        {"id": "s3", "path": "moved/y.mp3", "musicBrainzId": "mb-3"},
        {"id": "s4", "path": "other/z.mp3", "artist": "c", "title": " zed ", "duration": 201},
        {"id": "s5", "path": "other/w.mp3", "artist": "C", "title": "Zed", "duration": 150},  # too short
        {"id": "d1", "path": "A", "isDir": True},
    ]
    by_root = match(songs, tracks, roots=["/m"])
    assert by_root.track_of == {"s1": 1, "s3": 3, "s4": 4} and by_root.by == {"path": 1, "musicbrainz": 1, "tags": 1}
    assert by_root.entry("s1") == songs[0] and by_root.song_of[4] == "s4"
    # Without roots "A/x.flac" ends two catalog paths: not guessed (and its tags fit both).
    assert "s1" not in match(songs, tracks).track_of
    # A path that ends one catalog path, whole folder names only.
    for path, found in [("C/z.ogg", 4), ("z.ogg", 4), ("m/C/z.ogg", 4), ("D/C/z.ogg", None), ("x/z.ogg", None)]:
        assert match([{"id": "q", "path": path}], tracks).track_of.get("q") == found, path


def test_settings_refuse_bad_values():
    for bad in ({"url": "ftp://x"}, {"url": "http://"}, {"user": ""}, {"sync_s": 1}):
        with pytest.raises(InvalidArgumentError):
            SubsonicSettings(**{"url": "http://localhost:4533", "user": "u", "password": "p", **bad})
    assert SubsonicSettings(url="http://h:1/rest/", user="u", password="p").url == "http://h:1"


def test_a_server_that_cannot_be_reached_is_said_so(setup):
    catalog = setup[4]
    down = SubsonicSettings(url=f"http://127.0.0.1:{free_port()}", user=USER, password=PASSWORD)
    with running(Settings(catalog=catalog, subsonic=down)) as proxy:
        assert httpx.get(f"{proxy}/health").json()["status"] == "ok"  # the rest of the API works
        unreachable = httpx.get(f"{proxy}/rest/ping", params=AUTH)
        assert unreachable.status_code == 502 and unreachable.headers["x-content-type-options"] == "nosniff"
        answer = _json(proxy, "getSonicSimilarTracks", id="x")
        assert answer["status"] == "failed" and "could not check the credentials" in answer["error"]["message"]
        # Public, and answered alone when the server says nothing.
        listed = _json(proxy, "getOpenSubsonicExtensions")["openSubsonicExtensions"]
        assert listed == [{"name": "sonicSimilarity", "versions": [1]}]


def test_serve_refuses_a_bad_subsonic_setting(tmp_path):
    runner = CliRunner()
    for args, says in [
        (["--subsonic", "ftp://host"], "http(s)://HOST"),
        (["--subsonic", "http://127.0.0.1:4533"], "needs a user"),
    ]:
        result = runner.invoke(app, ["serve", "--catalog", str(tmp_path), *args])
        assert result.exit_code != 0 and says in result.output, result.output


@pytest.mark.slow
def test_songs_are_synced_again_on_schedule(setup, tmp_path):
    """A song added to both sides while the pass-through runs is answered after the next sync."""
    music, catalog = shutil.copytree(setup[3], tmp_path / "music"), shutil.copytree(setup[4], tmp_path / "cat")
    with supysonic(music, tmp_path / "supysonic") as upstream:
        subsonic = SubsonicSettings(url=upstream, user=USER, password=PASSWORD, sync_s=10)
        with running(Settings(catalog=catalog, subsonic=subsonic)) as proxy:
            new = write_audio(music / "New" / "new.flac", melody_track(396, 13, SAMPLE_RATE), SAMPLE_RATE)
            tag(new, "Z", "new")
            scan(tmp_path / "supysonic")
            with Catalog.open(catalog) as cat:
                assert cat.index_paths([music / "New"]).added == 1
            found = _json(upstream, "search3", query="new", songCount=5)["searchResult3"]["song"]
            song = next(s["id"] for s in found if s["title"] == "new")
            deadline = time.monotonic() + 60
            while (answer := _json(proxy, "getSonicSimilarTracks", id=song, count=2))["status"] != "ok":
                assert time.monotonic() < deadline, answer
                time.sleep(1)
            assert len(answer["sonicMatch"]) == 2


def test_only_the_apis_methods_pass_and_no_script_is_reflected(setup):
    proxy, upstream, songs, _, _ = setup
    host, port = httpx.URL(proxy).host, httpx.URL(proxy).port
    # Sent as is (httpx would resolve the ".."): the upstream's own page is never reached.
    for raw in ("/rest/../app/", "/rest/..%2Fapp/", "/rest/ping/../../app/", "/rest/ping.view%00"):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", raw)
        answer = connection.getresponse()
        assert answer.status == 404, raw
        assert b"<html" not in answer.read().lower(), raw
        connection.close()
    assert _json(proxy, "ping.view")["status"] == "ok"

    hostile = "alert(document.domain)//"
    for method in ("ping", "getOpenSubsonicExtensions", "getSonicSimilarTracks"):
        params = {**AUTH, "f": "jsonp", "callback": hostile, "id": songs["tune1"]["id"]}
        answer = httpx.get(f"{proxy}/rest/{method}", params=params, timeout=60)
        assert "javascript" not in answer.headers["content-type"] and "alert(" not in answer.text, method
        assert answer.json()["subsonic-response"]["status"] == "failed", method
        assert answer.headers["x-content-type-options"] == "nosniff", method
    answer = httpx.get(f"{proxy}/rest/getOpenSubsonicExtensions", params={**AUTH, "f": "jsonp", "callback": "app.cb"})
    assert answer.text.startswith("app.cb(") and answer.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{proxy}/rest/ping", params=AUTH).headers["x-content-type-options"] == "nosniff"


def test_parameters_are_read_alike_from_a_form_and_answers_say_the_server_version(setup):
    proxy, _, songs, _, _ = setup
    # A client of the formPost extension sends everything in the body.
    answer = httpx.post(f"{proxy}/rest/getOpenSubsonicExtensions", data={**AUTH, "f": "json"})
    extensions = answer.json()["subsonic-response"]["openSubsonicExtensions"]
    assert {"name": "sonicSimilarity", "versions": [1]} in extensions
    answer = httpx.post(f"{proxy}/rest/ping.view", data={**AUTH, "f": "json"})  # passed through whole
    assert answer.json()["subsonic-response"]["status"] == "ok"
    similar = _json(proxy, "getSonicSimilarTracks", id=songs["tune1"]["id"], count=2)
    assert similar["status"] == "ok" and similar["serverVersion"] and len(similar["sonicMatch"]) == 2
    none = _json(proxy, "getSonicSimilarTracks", id=songs["tune1"]["id"], count=0)
    assert none["status"] == "ok" and none.get("sonicMatch", []) == []
    failed = _json(proxy, "getSonicSimilarTracks", id="no-such-song")
    assert failed["status"] == "failed" and failed["serverVersion"] and failed["openSubsonic"] is True


def test_players_instant_mix_is_answered_from_the_catalog(setup):
    """getSimilarSongs(2), as a Subsonic client library calls them: a song, an album or an
    artist seeds the mix; the seeds never come back, each recording once, no artist filling it."""
    proxy, upstream, songs, _, _ = setup
    client = libsonic.Connection("http://127.0.0.1", USER, PASSWORD, port=int(proxy.rsplit(":", 1)[1]), legacyAuth=True)
    mix = client.getSimilarSongs(songs["echo"]["id"], count=3)["similarSongs"]["song"]
    assert mix[0]["title"] == "tune0" and len(mix) == 3  # echo starts with tune0's first 14 s
    assert all(entry == songs[entry["title"]] for entry in mix) and "echo" not in [e["title"] for e in mix]

    album = [songs[t] for t in ("tune0", "tune3", "tune6")]
    assert len({s["albumId"] for s in album}) == 1
    for seed in (album[0]["albumId"], album[0]["parent"]):
        mixed = [e["title"] for e in client.getSimilarSongs(seed, count=20)["similarSongs"]["song"]]
        # Every other song the catalog knows, once (tune2 by its own file), none of the album's.
        assert sorted(mixed) == sorted(["echo", "tune1", "tune2", "tune4", "tune5"]), seed
    # Either call takes any kind of id (players ask getSimilarSongs2 with a song's).
    assert client.getSimilarSongs2(songs["echo"]["id"], count=3)["similarSongs2"]["song"] == mix
    artist = songs["tune1"]["artistId"]
    mixed = client.getSimilarSongs2(artist, count=20)["similarSongs2"]["song"]
    assert {e["title"] for e in mixed} == {"echo", "tune0", "tune2", "tune3", "tune5", "tune6"}
    # No artist fills a short list: at most 2 of 5 are Artist0's (it has the most songs).
    short = client.getSimilarSongs(songs["tune1"]["id"], count=5)["similarSongs"]["song"]
    assert len(short) == 5 and sum(e["artist"] == "Artist0" for e in short) <= 2
    # count honoured, XML in the upstream's shape.
    assert client.getSimilarSongs(artist, count=0)["similarSongs"].get("song", []) == []
    root = ET.fromstring(httpx.get(f"{proxy}/rest/getSimilarSongs2", params={**AUTH, "id": artist, "count": 2}).content)
    assert root.get("status") == "ok" and len(root.findall(f"{NS}similarSongs2/{NS}song")) == 2
    # Credentials are the upstream's to accept.
    refused = _json(proxy, "getSimilarSongs", id=songs["tune1"]["id"], p="wrong")
    assert refused["status"] == "failed" and refused["error"]["code"] == 40


def test_instant_mix_of_songs_the_catalog_lacks_is_the_upstreams(setup):
    proxy, upstream, songs, _, catalog = setup
    for method, seed in [("getSimilarSongs", songs["extra"]["id"]), ("getSimilarSongs2", "no-such-id")]:
        params = {**AUTH, "f": "json", "id": seed}
        direct = httpx.get(f"{upstream}/rest/{method}", params=params)
        through = httpx.get(f"{proxy}/rest/{method}", params=params)
        assert (through.status_code, through.content) == (direct.status_code, direct.content), method
    # Turned off: the upstream answers every one.
    off = SubsonicSettings(url=upstream, user=USER, password=PASSWORD, similar_songs=False)
    with running(Settings(catalog=catalog, subsonic=off)) as other:
        params = {**AUTH, "f": "json", "id": songs["tune1"]["id"]}
        direct = httpx.get(f"{upstream}/rest/getSimilarSongs", params=params)
        assert httpx.get(f"{other}/rest/getSimilarSongs", params=params).content == direct.content


def _in_process(upstream: str, cat: Catalog, **settings):
    """A pass-through served in this process (its routes on an app of its own), to look inside."""
    from fastapi import FastAPI

    from mertsearch.subsonic import PassThrough

    lock = threading.Lock()
    passthrough = PassThrough(
        SubsonicSettings(url=upstream, user=USER, password=PASSWORD, **settings), lambda: cat, lock
    )
    app = FastAPI()
    passthrough.add_routes(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy", timeout=60)
    return passthrough, lock, client


def test_a_sync_reads_the_songs_again_only_when_a_side_changed(setup, tmp_path, monkeypatch):
    _, upstream, _, music, catalog = setup
    catalog = shutil.copytree(catalog, tmp_path / "cat")
    with Catalog.open(catalog) as cat:
        passthrough, _, _ = _in_process(upstream, cat)
        read = []

        async def run():
            async with passthrough.running():
                await passthrough.first_sync.wait()
                pages = passthrough.upstream.pages
                monkeypatch.setattr(passthrough.upstream, "pages", lambda: read.append(1) or pages())
                assert await passthrough.sync() and read == []  # nothing changed: one getIndexes
                assert len(passthrough.songs) == 8
                cat.remove([str(music / "Artist1" / "tune1.flac")])
                assert await passthrough.sync() and read == [1] and len(passthrough.songs) == 7
                assert await passthrough.sync(full=True) and read == [1, 1]

        asyncio.run(run())


def test_a_failed_sync_is_logged_and_tried_again(setup, monkeypatch, caplog):
    from mertsearch.subsonic import mapping, proxy

    _, upstream, _, _, catalog = setup
    monkeypatch.setattr(proxy, "RETRY_S", 0.2)
    add, failures = mapping.Matcher.add, []

    def broken_once(self, song):
        if not failures:
            failures.append(song)
            raise RuntimeError("a song the matching did not expect")
        add(self, song)

    monkeypatch.setattr(mapping.Matcher, "add", broken_once)
    with Catalog.open(catalog) as cat:
        passthrough, _, _ = _in_process(upstream, cat)

        async def run():
            async with passthrough.running():
                await passthrough.first_sync.wait()
                assert len(passthrough.songs) == 0  # the first sync failed; the server goes on
                deadline = time.monotonic() + 30
                while len(passthrough.songs) < 8:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)

        with caplog.at_level(logging.ERROR, logger="mertsearch.subsonic.proxy"):
            asyncio.run(run())
    assert "the sync failed" in caplog.text and "a song the matching did not expect" in caplog.text


def test_an_answer_keeps_the_song_map_it_began_with(setup):
    """A sync that replaces the map while an answer waits for the catalog does not fail it."""
    from mertsearch.subsonic.mapping import SongMap

    _, upstream, songs, _, catalog = setup
    with Catalog.open(catalog) as cat:
        passthrough, lock, client = _in_process(upstream, cat)

        async def run():
            async with passthrough.running():
                await passthrough.first_sync.wait()
                for method, params in [
                    ("getSonicSimilarTracks", {"id": songs["tune1"]["id"], "count": 2}),
                    ("findSonicPath", {"startSongId": songs["tune1"]["id"], "endSongId": songs["tune5"]["id"]}),
                    ("getSimilarSongs", {"id": songs["tune1"]["albumId"], "count": 2}),
                ]:
                    with lock:  # another search holds the catalog
                        asked = asyncio.create_task(
                            client.get(f"/rest/{method}", params={**AUTH, "f": "json", **params})
                        )
                        while not lock.locked() or not passthrough.upstream._verdicts:
                            await asyncio.sleep(0.01)
                        await asyncio.sleep(0.2)
                        kept, passthrough.songs = passthrough.songs, SongMap()  # a sync that found nothing
                    answer = (await asked).json()["subsonic-response"]
                    passthrough.songs = kept
                    assert answer["status"] == "ok", (method, answer)

        asyncio.run(run())


@pytest.mark.slow
def test_new_songs_under_the_root_are_indexed_in_the_background(setup, tmp_path):
    """The song only the server has ("extra", under its music folder) becomes sonic by itself."""
    proxy, upstream, songs, music, catalog = setup
    catalog = shutil.copytree(catalog, tmp_path / "cat")
    subsonic = SubsonicSettings(url=upstream, user=USER, password=PASSWORD, roots=[str(music)])
    with running(Settings(catalog=catalog, subsonic=subsonic, token="t")) as other:
        deadline = time.monotonic() + 120
        while (answer := _json(other, "getSonicSimilarTracks", id=songs["extra"]["id"], count=2))["status"] != "ok":
            assert time.monotonic() < deadline, answer
            time.sleep(0.5)
        assert len(answer["sonicMatch"]) == 2
        health = httpx.get(f"{other}/health", headers={"authorization": "Bearer t"}).json()["subsonic"]
        # The long WAV is new too: both files were indexed.
        assert health["indexing"] == {"queued": 2, "done": 2, "added": 2, "failed": 0, "running": False}
        assert health["songs"] == 10
    with Catalog.open(catalog) as cat:
        assert cat.store.count("tracks") == 12


def test_sonic_mixes_live_on_the_server_as_the_sync_accounts_playlists(setup, tmp_path):
    """Scrobbles and stars of the sync account become playlists of it, replaced in place; a
    playlist it did not make is never touched."""
    from mertsearch.subsonic.mixes import MARK

    _, upstream, songs, _, catalog = setup
    direct = libsonic.Connection(
        "http://127.0.0.1", USER, PASSWORD, port=int(upstream.rsplit(":", 1)[1]), legacyAuth=True
    )
    direct.createPlaylist(name="Sonic mix: recently played", songIds=[songs["tune3"]["id"]])  # the user's own
    direct.star(sids=[songs["tune1"]["id"]])
    try:
        with Catalog.open(catalog) as cat:
            passthrough, _, client = _in_process(upstream, cat, mixes=True)

            def playlists() -> dict:
                found = direct.getPlaylists()["playlists"].get("playlist", [])
                return {
                    (p["name"], p.get("comment") == MARK): [
                        e["title"] for e in direct.getPlaylist(p["id"])["playlist"].get("entry", [])
                    ]
                    for p in found
                }

            async def run():
                async with passthrough.running():
                    await passthrough.first_sync.wait()  # it made the starred song's mix
                    made = playlists()
                    assert made[("Sonic mix: recently played", False)] == ["tune3"]
                    starred = made[("Sonic mix: Artist1 - tune1", True)]
                    assert sorted(starred) == ["echo", "tune0", "tune2", "tune3", "tune4", "tune5", "tune6"]
                    for title in ("echo", "tune0"):
                        answer = await client.get(
                            "/rest/scrobble", params={**AUTH, "f": "json", "id": songs[title]["id"]}
                        )
                        assert answer.json()["subsonic-response"]["status"] == "ok"
                    await client.get("/rest/scrobble", params={**AUTH, "id": songs["tune5"]["id"], "p": "wrong"})
                    while passthrough._pending:
                        await asyncio.sleep(0.05)
                    direct.unstar(sids=[songs["tune1"]["id"]])
                    await passthrough.refresh_mixes()
                    made = playlists()
                    recent = made[("Sonic mix: recently played", True)]
                    assert sorted(recent) == [f"tune{n}" for n in range(1, 7)]
                    assert made[("Sonic mix: recently played", False)] == ["tune3"]  # untouched
                    assert not any(name.startswith("Sonic mix: Artist1") for name, _ in made)  # unstarred: gone
                    identity = {p["name"]: p["id"] for p in direct.getPlaylists()["playlists"]["playlist"]}
                    await passthrough.refresh_mixes()
                    assert {p["name"]: p["id"] for p in direct.getPlaylists()["playlists"]["playlist"]} == identity

            asyncio.run(run())
    finally:
        for playlist in direct.getPlaylists()["playlists"].get("playlist", []):
            direct.deletePlaylist(playlist["id"])
        direct.unstar(sids=[songs["tune1"]["id"]])


def test_a_server_without_a_library_stamp_is_read_at_every_sync(setup, tmp_path):
    """Gonic answers getIndexes with lastModified 0: no change could be seen by it, so every sync
    reads the songs (a stand-in server that answers as it does, in this process)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mertsearch.subsonic import PassThrough
    from mertsearch.subsonic.upstream import Upstream
    from tests.servers import serving

    _, _, songs, _, catalog = setup
    asked = []

    def answer(request):
        method = request.path_params["method"]
        asked.append(method)
        inner = {"status": "ok", "version": "1.16.1"}
        if method == "getIndexes":
            inner["indexes"] = {"lastModified": 0, "ignoredArticles": ""}
        elif method == "search3":
            page = list(songs.values()) if request.query_params.get("songOffset") == "0" else []
            inner["searchResult3"] = {"song": page}
        return JSONResponse({"subsonic-response": inner})

    app = Starlette(routes=[Route("/rest/{method}", answer)])
    with serving(app) as url, Catalog.open(catalog) as cat:
        passthrough = PassThrough(
            SubsonicSettings(url=url, user=USER, password=PASSWORD), lambda: cat, threading.Lock()
        )

        async def run():
            passthrough.upstream = Upstream(url, user=USER, password=PASSWORD)
            try:
                for _ in range(2):
                    assert await passthrough.sync() and len(passthrough.songs) == 8
            finally:
                await passthrough.upstream.aclose()

        asyncio.run(run())
    assert asked.count("search3") == 2 and asked.count("getIndexes") == 2


def test_the_server_answers_while_its_first_sync_runs(setup):
    _, upstream, songs, _, catalog = setup
    with Catalog.open(catalog) as cat:
        passthrough, _, client = _in_process(upstream, cat)

        async def run():
            release = asyncio.Event()
            async with passthrough.running():
                pages = passthrough.upstream.pages

                async def slow():
                    await release.wait()  # a large library: the first sync takes a while
                    async for page in pages():
                        yield page

                passthrough.upstream.pages = slow
                params = {**AUTH, "f": "json", "id": songs["tune1"]["id"]}
                answer = (await client.get("/rest/getSonicSimilarTracks", params=params)).json()["subsonic-response"]
                assert answer["status"] == "failed" and "try again shortly" in answer["error"]["message"]
                assert passthrough.status()["synced"] is None and not passthrough.first_sync.is_set()
                release.set()
                await passthrough.first_sync.wait()
                answer = (await client.get("/rest/getSonicSimilarTracks", params=params)).json()["subsonic-response"]
                assert answer["status"] == "ok" and passthrough.status()["songs"] == 8

        asyncio.run(run())
