"""Upload limits hold before anything is spooled: Content-Length is checked first, a streamed body is
cut at the limit, and no more than the limit reaches the disk."""

import shutil
import socket
import tempfile
from urllib.parse import urlparse

import httpx
import pytest
import starlette.formparsers

from mertsearch import Catalog
from mertsearch.api.app import FORM_OVERHEAD_BYTES, Settings

from .servers import running

LIMIT = 200_000


class Spooled(tempfile.SpooledTemporaryFile):
    """The form parser's spool file, measured: the most bytes any one held."""

    largest = 0

    def write(self, data):
        written = super().write(data)
        Spooled.largest = max(Spooled.largest, self.tell())
        return written


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("uploads")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music / "a.wav"], decoders=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(starlette.formparsers, "SpooledTemporaryFile", Spooled)
        with running(Settings(catalog=root / "cat", max_upload_bytes=LIMIT)) as base:
            yield base


@pytest.fixture(autouse=True)
def _measure():
    Spooled.largest = 0


def test_a_body_twenty_times_the_limit_is_413_and_never_spooled(url):
    response = httpx.post(f"{url}/search", files={"file": ("big.wav", b"\0" * (20 * LIMIT))}, timeout=30)
    assert response.status_code == 413 and response.json()["status"] == 413
    assert Spooled.largest <= LIMIT + FORM_OVERHEAD_BYTES


def test_a_streamed_body_without_a_length_is_cut_at_the_limit(url):
    boundary = "b0undary"

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'.encode()
        for _ in range(20):
            yield b"\0" * LIMIT
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{url}/search", content=body(), headers=headers, timeout=30)
    assert response.status_code == 413
    assert Spooled.largest <= LIMIT + FORM_OVERHEAD_BYTES


def test_a_content_length_over_the_limit_is_refused_before_the_body(url):
    address = urlparse(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        answer = connection.recv(4096)  # no body sent: the answer comes from the header alone
    assert answer.startswith(b"HTTP/1.1 413")
    assert Spooled.largest == 0


def test_an_upload_just_under_the_limit_still_reaches_the_decoder(url):
    response = httpx.post(f"{url}/search", files={"file": ("notes.mp3", b"not audio" * (LIMIT // 10))}, timeout=30)
    assert response.status_code == 422 and "cannot decode audio" in response.json()["message"]
