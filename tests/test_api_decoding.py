"""Uploads are decoded in worker processes outside the model lock: a decoder that aborts costs its
request a 422 and nothing else, and a slow decode holds up no other request."""

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.api.decoding import decode_upload
from tests.helpers import tone_track, write_audio

from .servers import running


def test_decoder(data: bytes, **options):
    """The real decoder, but an upload starting b"ABORT" kills the worker (as a crash in FFmpeg's
    native code would) and one starting b"WAIT <folder>" waits for a file named release there."""
    if data.startswith(b"ABORT"):
        os.abort()
    if data.startswith(b"WAIT "):
        folder = Path(data[5:].decode())
        (folder / "started").touch()
        while not (folder / "release").exists():
            time.sleep(0.05)
        data = (folder / "clip.wav").read_bytes()
    return decode_upload(data, **options)


test_decoder.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("decoding")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    with running(Settings(catalog=root / "cat", decode_upload=test_decoder)) as base:
        yield base


@pytest.fixture
def clip(tmp_path):
    return write_audio(tmp_path / "clip.wav", tone_track(1, 6, 44100), 44100).read_bytes()


@pytest.mark.slow
def test_a_decoder_that_aborts_costs_only_its_request(url, clip):
    crashed = httpx.post(f"{url}/search", files={"file": ("bad.mp3", b"ABORT" + b"\0" * 100)}, timeout=60)
    assert crashed.status_code == 422 and "decoder crashed" in crashed.json()["message"]
    assert httpx.get(f"{url}/health").status_code == 200
    after = httpx.post(f"{url}/search", files={"file": ("clip.wav", clip)}, timeout=60)
    assert after.status_code == 200 and after.json()["results"]


@pytest.mark.slow
def test_uploads_decoded_while_a_worker_aborts_still_get_answers(url, clip):
    answers = []

    def search(data):
        answers.append(httpx.post(f"{url}/search", files={"file": ("x.wav", data)}, timeout=120).status_code)

    threads = [threading.Thread(target=search, args=(data,)) for data in [clip, b"ABORT", clip, clip]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 200, 200, 422]


@pytest.mark.slow
def test_a_slow_decode_holds_up_no_other_request(url, clip, tmp_path):
    (tmp_path / "clip.wav").write_bytes(clip)
    slow: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: slow.append(
            httpx.post(f"{url}/search", files={"file": ("slow", f"WAIT {tmp_path}".encode())}, timeout=120)
        )
    )
    waiting.start()
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "started").exists()
        # While that decode waits, the model's work and other uploads go on.
        assert httpx.get(f"{url}/tracks/1/similar", timeout=30).status_code == 200
        assert httpx.post(f"{url}/search", files={"file": ("clip.wav", clip)}, timeout=30).status_code == 200
    finally:
        (tmp_path / "release").touch()
        waiting.join()
    assert slow[0].status_code == 200
