"""Every answer the Subsonic pass-through writes itself, checked against the OpenSubsonic OpenAPI
schemas (tests/openapi/, tests/subsonic_schema.py) in JSON, JSONP and XML: the extension list, the
sonicSimilarity endpoints' songs and their errors. Answers the upstream writes (everything else)
are its own business."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from mertsearch.subsonic.responses import Format, with_extension
from tests.subsonic_library import AUTH, served_library
from tests.subsonic_schema import OPENAPI, registry, validate

# The three formats a client may ask for (XML: no f at all).
FORMATS = {"json": {"f": "json"}, "jsonp": {"f": "jsonp", "callback": "window.answer"}, "xml": {}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(proxy URL, upstream songs by title) of the served library (tests/subsonic_library.py)."""
    with served_library(tmp_path_factory.mktemp("subsonic-schema")) as (proxy, _, songs, _, _):
        yield proxy, songs


def cases(songs: dict[str, dict]) -> list[tuple[str, dict, str | int, int | None]]:
    """(endpoint, parameters, "ok" or the error code, the length of its sonicMatch where checked).
    Another endpoint the pass-through answers is a line here, once its schemas are in tests/openapi/."""
    echo, tune1, tune5 = (songs[title]["id"] for title in ("echo", "tune1", "tune5"))
    return [
        # Supysonic has no OpenSubsonic: the list is the pass-through's own.
        ("getOpenSubsonicExtensions", {}, "ok", None),
        ("getSonicSimilarTracks", {"id": echo, "count": 3}, "ok", 3),
        ("getSonicSimilarTracks", {"id": echo, "count": 0}, "ok", 0),
        ("getSonicSimilarTracks", {"id": echo}, "ok", 7),  # the default count (10): the 7 others there are
        ("findSonicPath", {"startSongId": tune1, "endSongId": tune5, "count": 5}, "ok", 5),
        ("findSonicPath", {"startSongId": tune1, "endSongId": tune1}, "ok", 1),
        # Instant Mix by a song, an album, an artist (either call takes any), and 40 as ever.
        ("getSimilarSongs", {"id": echo, "count": 3}, "ok", 3),
        ("getSimilarSongs", {"id": songs["tune1"]["albumId"], "count": 0}, "ok", 0),
        ("getSimilarSongs2", {"id": songs["tune1"]["artistId"]}, "ok", 6),
        ("getSimilarSongs2", {"id": tune1, "count": 2}, "ok", 2),
        ("getSimilarSongs", {"id": echo, "count": 501}, 0, None),
        ("getSimilarSongs2", {"id": tune1, "p": "wrong"}, 40, None),
        ("getSonicSimilarTracks", {}, 10, None),
        ("findSonicPath", {"startSongId": tune1}, 10, None),
        ("getSonicSimilarTracks", {"id": "no-such-song"}, 70, None),
        ("getSonicSimilarTracks", {"id": songs["extra"]["id"]}, 70, None),  # upstream only
        ("findSonicPath", {"startSongId": tune1, "endSongId": "no-such-song"}, 70, None),
        ("getSonicSimilarTracks", {"id": echo, "count": "many"}, 0, None),
        ("getSonicSimilarTracks", {"id": echo, "count": 501}, 0, None),
        ("findSonicPath", {"startSongId": tune1, "endSongId": tune5, "count": 1}, 0, None),
        # The upstream's ping refuses the password; the pass-through writes its error.
        ("getSonicSimilarTracks", {"id": echo, "p": "wrong"}, 40, None),
        ("findSonicPath", {"startSongId": tune1, "endSongId": tune5, "p": "wrong"}, 40, None),
    ]


def _checked(answer: httpx.Response, endpoint: str, kind: str) -> dict:
    assert answer.status_code == 200
    return validate(endpoint, answer.content, kind)["subsonic-response"]


@pytest.mark.parametrize("kind", FORMATS)
def test_answers_follow_the_spec(served, kind):
    proxy, songs = served
    for endpoint, params, expected, count in cases(songs):
        answer = httpx.get(f"{proxy}/rest/{endpoint}", params={**AUTH, **FORMATS[kind], **params}, timeout=60)
        inner = _checked(answer, endpoint, kind)
        said = inner["status"] if inner["status"] == "ok" else inner["error"]["code"]
        assert said == expected, (endpoint, params, inner)
        if count is not None:
            listed = inner.get("sonicMatch", inner.get("similarSongs", inner.get("similarSongs2", {})))
            listed = listed.get("song", []) if isinstance(listed, dict) else listed
            assert len(listed) == count, (endpoint, params)
    extensions = _checked(
        httpx.get(f"{proxy}/rest/getOpenSubsonicExtensions.view", params={**AUTH, **FORMATS[kind]}, timeout=60),
        "getOpenSubsonicExtensions",
        kind,
    )
    assert {"name": "sonicSimilarity", "versions": [1]} in extensions["openSubsonicExtensions"]


def test_a_refused_callback_is_a_spec_error(served):
    """A JSONP callback that is no JavaScript identifier: an error in JSON, for any method (getSong
    would otherwise go to the upstream)."""
    proxy, songs = served
    for endpoint in ("getOpenSubsonicExtensions", "getSonicSimilarTracks", "findSonicPath", "getSong"):
        params = {**AUTH, "f": "jsonp", "callback": "alert(1)//", "id": songs["tune1"]["id"]}
        inner = _checked(httpx.get(f"{proxy}/rest/{endpoint}", params=params, timeout=60), endpoint, "json")
        assert inner["status"] == "failed" and inner["error"]["code"] == 0, endpoint


def test_form_parameters_give_the_same_answers(served):
    """The formPost extension: every parameter in an application/x-www-form-urlencoded body."""
    proxy, songs = served
    for kind, wanted in FORMATS.items():
        for endpoint, params, _, _ in cases(songs):
            fields = {**AUTH, **wanted, **params}
            got = httpx.get(f"{proxy}/rest/{endpoint}", params=fields, timeout=60)
            posted = httpx.post(f"{proxy}/rest/{endpoint}", data=fields, timeout=60)
            assert posted.headers["content-type"] == got.headers["content-type"], (kind, endpoint)
            assert posted.content == got.content, (kind, endpoint, params)
            _checked(posted, endpoint, kind)


def test_an_upstream_list_of_extensions_stays_in_the_spec():
    """An OpenSubsonic server's own list with sonicSimilarity added, in each format."""
    envelope = 'status="ok" version="1.16.1" type="navidrome" serverVersion="0.58.0" openSubsonic="true"'
    upstream = {
        "json": '{"subsonic-response":{"status":"ok","version":"1.16.1","type":"navidrome","serverVersion":'
        '"0.58.0","openSubsonic":true,"openSubsonicExtensions":[{"name":"formPost","versions":[1]}]}}',
        "xml": f'<subsonic-response xmlns="http://subsonic.org/restapi" {envelope}>'
        '<openSubsonicExtensions name="formPost"><versions>1</versions></openSubsonicExtensions>'
        "</subsonic-response>",
    }
    upstream["jsonp"] = f"window.answer({upstream['json']});"
    for kind, body in upstream.items():
        validate("getOpenSubsonicExtensions", body, kind)  # the example itself is in the spec
        extended = with_extension(body.encode(), Format(FORMATS[kind].get("f"), FORMATS[kind].get("callback")))
        listed = validate("getOpenSubsonicExtensions", extended, kind)["subsonic-response"]["openSubsonicExtensions"]
        assert listed == [{"name": "formPost", "versions": [1]}, {"name": "sonicSimilarity", "versions": [1]}], kind


def test_the_schemas_refuse_what_breaks_the_spec():
    """The checks are not vacuous: an answer that breaks the spec fails them, in JSON and in XML."""
    head = '"status":"ok","version":"1.16.1","type":"mertsearch","serverVersion":"1","openSubsonic":true'
    entry = '{"id":"1","isDir":false,"title":"t","duration":3}'
    validate("getSonicSimilarTracks", f'{{"subsonic-response":{{{head},"sonicMatch":[]}}}}', "json")
    for broken in [
        f'{{"subsonic-response":{{{head}}}}}',  # no sonicMatch
        f'{{"subsonic-response":{{{head},"sonicMatch":[{{"entry":{entry},"similarity":2}}]}}}}',
        f'{{"subsonic-response":{{{head},"sonicMatch":[{{"entry":{{"id":"1"}},"similarity":1}}]}}}}',
        f'{{"subsonic-response":{{{head.replace("ok", "failed")},"error":{{"code":11}}}}}}',
        '{"subsonic-response":{"status":"ok","version":"1.16.1","sonicMatch":[]}}',  # no OpenSubsonic fields
    ]:
        with pytest.raises(jsonschema.ValidationError):
            validate("getSonicSimilarTracks", broken, "json")
    xml = (
        '<subsonic-response xmlns="http://subsonic.org/restapi" status="ok" version="1.16.1" type="mertsearch" '
        'serverVersion="1" openSubsonic="true"><sonicMatch similarity="0.5">'
        '<entry id="1" isDir="false" title="t" duration="3"/></sonicMatch></subsonic-response>'
    )
    assert validate("getSonicSimilarTracks", xml, "xml")["subsonic-response"]["sonicMatch"] == [
        {"entry": {"id": "1", "isDir": False, "title": "t", "duration": 3}, "similarity": 0.5}
    ]
    for old, new in [('similarity="0.5"', 'similarity="high"'), ('isDir="false"', 'isDir="no"'), ('"3"', '"3.5"')]:
        with pytest.raises(jsonschema.ValidationError):
            validate("getSonicSimilarTracks", xml.replace(old, new), "xml")


def test_the_pinned_copy_is_whole():
    """Every $ref of the pinned files resolves, so any endpoint there (getSong, getSimilarSongs,
    getSimilarSongs2 too) can be checked as it stands."""

    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            yield from (ref for value in node.values() for ref in refs(value))
        elif isinstance(node, list):
            yield from (ref for value in node for ref in refs(value))

    endpoints = sorted(path.stem for path in (OPENAPI / "endpoints").glob("*.json"))
    assert {"getSong", "getSimilarSongs", "getSimilarSongs2", "getSonicSimilarTracks"} <= set(endpoints)
    for path in OPENAPI.rglob("*.json"):
        resolver = registry().resolver(base_uri=path.as_uri())
        for ref in refs(json.loads(path.read_text())):
            resolver.lookup(ref)  # referencing.exceptions.Unresolvable where a file is missing
