"""The HTTP API through a real server on loopback, with the Python client and raw requests."""

import shutil
import socket
import threading

import httpx
import mutagen
import numpy as np
import pytest
import uvicorn

from mertsearch import Catalog
from mertsearch.api.app import Settings, is_loopback
from mertsearch.client import ApiError, Client
from tests.helpers import tone_track, write_audio

from .servers import running

SR = 44100


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("api")
    music = shutil.copytree(music_source, root / "music")
    tagged = mutagen.File(str(music / "b.flac"), easy=True)
    tagged["title"], tagged["artist"] = "Blue Tune", "Ann"
    tagged.save()
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music])
    return root / "cat"


@pytest.fixture(scope="module")
def base_url(catalog_dir):
    with running(Settings(catalog=catalog_dir, max_upload_bytes=3_000_000, max_clip_seconds=30)) as url:
        yield url


@pytest.fixture
def clip(tmp_path):
    return write_audio(tmp_path / "clip.wav", tone_track(1, 6, SR), SR)


def test_search_by_upload_matches_the_python_api(base_url, catalog_dir, clip):
    with Client(base_url) as client:
        results = client.search(clip, k=3)
    with Catalog.open(catalog_dir) as cat:
        expected = [r.as_dict() for r in cat.search(clip, k=3)]
    assert [r["track_id"] for r in results] == [r["track_id"] for r in expected]
    assert results[0]["path"].endswith("b.flac") and set(results[0]["match"]) == {"start", "end"}
    assert [r["offset"] for r in results] == [r["offset"] for r in expected]
    assert all(isinstance(r["offset"], float) for r in results)
    np.testing.assert_allclose([r["score"] for r in results], [r["score"] for r in expected], atol=1e-5)


def test_search_options_similar_track_and_text_search(base_url, clip):
    with Client(base_url) as client:
        assert len(client.search(clip, k=2, mode="tracks", start=1, end=5)) == 2
        assert all(r["artist"] == "Ann" for r in client.search(clip, k=5, filter=["artist=Ann"]))
        similar = client.similar(2, k=3, per_artist=1)
        assert len(similar) == 3 and 2 not in [r["track_id"] for r in similar]
        assert [r["offset"] for r in similar] == [None] * 3
        track = client.track(2)
        assert (track["title"], track["artist"]) == ("Blue Tune", "Ann") and track["duration"] == 12.0
        found = client.tracks("blue")
        assert found["total"] == 1 and found["tracks"][0]["track_id"] == 2
        assert client.tracks(limit=2)["total"] == 6 and len(client.tracks(limit=2)["tracks"]) == 2
        assert client.info()["tracks"] == 6 and client.health()["status"] == "ok"


def test_audio_streams_with_range_requests(base_url, catalog_dir):
    whole = httpx.get(f"{base_url}/tracks/2/audio")
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac"
    part = httpx.get(f"{base_url}/tracks/2/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["accept-ranges"] == "bytes"
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"


@pytest.mark.parametrize(
    "files,data,status,message",
    [
        ({"file": ("empty.wav", b"")}, {}, 400, "empty upload"),
        ({"file": ("notes.mp3", b"not audio at all" * 100)}, {}, 422, "cannot decode audio"),
        ({"file": ("big.wav", b"\0" * 3_000_001)}, {}, 413, "larger than"),
        ({}, {}, 422, "file"),
        ({"file": ("clip.wav", b"x")}, {"k": "0"}, 422, "k"),
        ({"file": ("clip.wav", b"x")}, {"mode": "nearest"}, 422, "mode"),
    ],
)
def test_bad_uploads_are_4xx_with_a_reason(base_url, files, data, status, message):
    response = httpx.post(f"{base_url}/search", files=files or None, data=data)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and message in body["message"]


def test_a_json_body_instead_of_a_form_is_4xx(base_url):
    response = httpx.post(f"{base_url}/search", json={"file": "clip.wav", "k": 5})
    assert response.status_code == 422 and "file" in response.json()["message"]


def test_too_long_and_silent_clips(base_url, tmp_path):
    long_clip = write_audio(tmp_path / "long.flac", tone_track(2, 40, 8000), 8000)
    response = httpx.post(f"{base_url}/search", files={"file": ("long.flac", long_clip.read_bytes())})
    assert response.status_code == 413 and "longer than 30 s" in response.json()["message"]
    silent = write_audio(tmp_path / "silent.wav", np.zeros((1, SR * 2), np.float32), SR)
    response = httpx.post(f"{base_url}/search", files={"file": ("silent.wav", silent.read_bytes())})
    assert response.status_code == 422 and "silent" in response.json()["message"]


@pytest.mark.parametrize(
    "path,status",
    [
        ("/tracks/999", 404),
        ("/tracks/999/similar", 404),
        ("/tracks/abc", 422),
        ("/tracks/1/similar?k=0", 422),
        ("/tracks/1/similar?filter=colour=red", 422),
        ("/tracks/..%2F..%2Fetc%2Fpasswd/audio", 404),
        ("/..%2F..%2F..%2Fetc%2Fpasswd", 404),
        ("/static/../../../../etc/passwd", 404),
        ("/tracks/1/similar?k=1000000", 422),
        (f"/tracks/{2**70}", 422),
        (f"/tracks?offset={2**70}", 422),
        ("/tracks/1/similar?min_duration=nan", 422),
        ("/nope", 404),
    ],
)
def test_bad_requests(base_url, path, status):
    response = httpx.get(base_url + path)
    assert response.status_code == status and response.json()["status"] == status


def test_openapi_schema_and_docs(base_url):
    schema = httpx.get(f"{base_url}/openapi.json").json()
    assert {"/search", "/tracks/{track_id}/similar", "/tracks/{track_id}/audio", "/info", "/health"} <= set(
        schema["paths"]
    )
    assert httpx.get(f"{base_url}/docs").status_code == 200


def test_concurrent_searches_are_safe(base_url, clip):
    outcomes = []

    def one():
        with Client(base_url) as client:
            outcomes.append([r["track_id"] for r in client.search(clip, k=3)])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 6 and all(o == outcomes[0] for o in outcomes)


def test_token_is_required_when_set(catalog_dir, clip):
    with running(Settings(catalog=catalog_dir, token="s3cret")) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        denied = httpx.get(f"{url}/info")
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with Client(url, token="s3cret") as client:
            assert client.info()["tracks"] == 6
            assert httpx.get(client.audio_url(1)).status_code == 200
        with Client(url) as anonymous, pytest.raises(ApiError) as raised:
            anonymous.search(clip)
        assert raised.value.status == 401


def test_cors_and_loopback_rules(catalog_dir):
    with running(Settings(catalog=catalog_dir, cors_origins=["https://app.example"])) as url:
        response = httpx.options(
            f"{url}/info", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        )
        assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.1")
    assert not is_loopback("")  # every interface, to uvicorn


def test_a_host_name_is_loopback_only_when_every_address_is(monkeypatch):
    names = {"lo.test": ["127.0.0.1", "::1"], "both.test": ["127.0.0.1", "192.0.2.1"]}

    def resolve(host, *_args, **_kwargs):
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert is_loopback("lo.test")
    assert not is_loopback("both.test") and not is_loopback("unknown.test")


@pytest.mark.parametrize("host", ["0.0.0.0", ""])
def test_serve_refuses_to_listen_beyond_loopback_without_a_token(catalog_dir, monkeypatch, host):
    from typer.testing import CliRunner

    from mertsearch.cli import app

    monkeypatch.delenv("MERTSEARCH_TOKEN", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **_kwargs: pytest.fail(f"served on {host!r} without a token"))
    result = CliRunner().invoke(app, ["serve", "--catalog", str(catalog_dir), "--host", host])
    assert result.exit_code == 1 and "needs a token" in result.stderr
