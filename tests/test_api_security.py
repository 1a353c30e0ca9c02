"""The HTTP API as an attacker or a careless client would try it, through a real server on loopback."""

import shutil

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.api.auth import AudioUrlSigner
from mertsearch.client import Client
from mertsearch.errors import InvalidArgumentError

from .servers import running

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("security")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    return root / "cat"


@pytest.fixture(scope="module")
def url(catalog_dir):
    with running(Settings(catalog=catalog_dir, token=TOKEN, max_upload_bytes=200_000)) as base:
        yield base


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer caf\xc3\xa9",
        b"Bearer \xff\xfe\xfd",
        "Bearer s3cret-tokén".encode(),
        b"Bearer",
        b"Basic czNjcmV0LXRva2Vu",
        b"s3cret-token",
        b"Bearer s3cret-token s3cret-token",
        b"Bearer s3cret-toke",
    ],
)
def test_malformed_or_wrong_credentials_are_401(url, header):
    response = httpx.get(f"{url}/info", headers={"Authorization": header})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


def test_the_scheme_is_case_insensitive(url):
    assert httpx.get(f"{url}/info", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("token", ["caf%C3%A9", "%FF", "s3cret-tok%00en", ""])
def test_a_token_in_the_audio_url_that_is_not_ascii_is_401(url, token):
    response = httpx.get(f"{url}/tracks/1/audio?token={token}")
    assert response.status_code == 401


@pytest.mark.parametrize("token", ["", "café", "two words", "tab\there"])
def test_the_server_token_must_be_printable_ascii(catalog_dir, token):
    with pytest.raises(InvalidArgumentError, match="token"):
        Settings(catalog=catalog_dir, token=token)


def test_health_tells_the_track_count_only_with_the_token(url):
    anonymous = httpx.get(f"{url}/health")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok", "model": True}
    assert httpx.get(f"{url}/health", headers={"Authorization": "Bearer wrong"}).json() == anonymous.json()
    assert httpx.get(f"{url}/health", headers=AUTH).json()["tracks"] == 6


@pytest.mark.parametrize("q", ["_", "%", "a_wav", "%.wav", "a%", "\\", "/"])
def test_text_search_takes_like_wildcards_literally(url, q):
    everything = httpx.get(f"{url}/tracks", params={"limit": 500}, headers=AUTH).json()["tracks"]
    fields = ("title", "artist", "album", "path")
    expected = sum(any(q in (track[f] or "").lower() for f in fields) for track in everything)
    found = httpx.get(f"{url}/tracks", params={"q": q}, headers=AUTH).json()
    assert found["total"] == expected


def test_audio_urls_are_signed_never_carrying_the_token(url):
    with Client(url, token=TOKEN) as client:
        signed = client.audio_url(2)
    assert TOKEN not in signed and "signature=" in signed and "expires=" in signed
    whole = httpx.get(signed)
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac"
    part = httpx.get(signed, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    # The same signature for another track, or with another expiry, is refused.
    assert httpx.get(signed.replace("/tracks/2/", "/tracks/3/")).status_code == 401
    expires = int(signed.split("expires=")[1].split("&")[0])
    assert httpx.get(signed.replace(f"expires={expires}", f"expires={expires + 1}")).status_code == 401
    # The token itself is no longer taken from a URL; the header still works.
    assert httpx.get(f"{url}/tracks/2/audio?token={TOKEN}").status_code == 401
    assert httpx.get(f"{url}/tracks/2/audio", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["expires=abc&signature=00", "expires=99999999999999999999&signature=00", "signature=%C3%A9", "expires=-1"],
)
def test_malformed_signed_urls_are_401(url, query):
    assert httpx.get(f"{url}/tracks/2/audio?{query}").status_code == 401


def test_signed_urls_need_the_token_and_a_known_track(url):
    assert httpx.get(f"{url}/tracks/2/audio-url").status_code == 401
    assert httpx.get(f"{url}/tracks/999/audio-url", headers=AUTH).status_code == 404


def test_a_signed_url_expires():
    signer = AudioUrlSigner(60, secret=b"k" * 32)
    expires, signature = signer.sign(5, now=1000)
    assert expires == 1060 and signer.valid(5, str(expires), signature, now=1000)
    assert not signer.valid(5, str(expires), signature, now=1061)
    assert not signer.valid(6, str(expires), signature, now=1000)
    assert not AudioUrlSigner(60).valid(5, str(expires), signature, now=1000)  # another server's secret


def test_the_client_quotes_what_it_puts_in_urls(url):
    with Client(url) as anonymous:
        assert anonymous.audio_url(2) == f"{url}/tracks/2/audio"
        with pytest.raises(ValueError):
            anonymous.audio_url("2/../../info")
