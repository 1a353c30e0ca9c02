"""A busy server stays responsive: uploads beyond what the decoders take get 503 with Retry-After at
once, an upload waits for a decoder a bounded time, and however many searches wait for the model's
lock, /health, audio and metadata answer promptly."""

import shutil
import threading
import time

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from tests.helpers import tone_track, write_audio
from tests.test_api_decoding import test_decoder

from .servers import running

WAIT_S = 6.0  # the longest an upload waits for the decoder


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("busy")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music / "a.wav", music / "b.flac", music / "c.mp3"], decoders=0)
    # One decoder: four uploads at once, one decoding and three waiting.
    settings = Settings(catalog=root / "cat", decoders=1, upload_wait_s=WAIT_S, decode_upload=test_decoder)
    with running(settings) as base:
        yield base


def post_timed(url: str, data: bytes, answers: list) -> None:
    started = time.monotonic()
    response = httpx.post(f"{url}/search", files={"file": ("clip", data)}, timeout=120)
    answers.append((response, time.monotonic() - started))


def assert_prompt(url: str) -> None:
    """/health, a range of a track's audio and a track's metadata, each answered within 5 s."""
    with httpx.Client(base_url=url, timeout=5) as http:
        assert http.get("/health").status_code == 200
        audio = http.get("/tracks/1/audio", headers={"Range": "bytes=0-1023"})
        assert audio.status_code == 206 and len(audio.content) == 1024
        assert http.get("/tracks/1").status_code == 200


@pytest.mark.slow
def test_uploads_beyond_the_decoders_get_503_at_once_and_the_rest_still_answers(url, tmp_path):
    write_audio(tmp_path / "clip.wav", tone_track(1, 6, 44100), 44100)
    slow = f"WAIT {tmp_path}".encode()  # a decode that lasts until the test releases it
    decoding: list = []
    first = threading.Thread(target=post_timed, args=(url, slow, decoding))
    first.start()
    extra: list = []
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "started").exists()
        # Five more, of 2 MB each: three are taken in to wait, two are refused at once (their bodies unread).
        more = [threading.Thread(target=post_timed, args=(url, slow + b"\0" * 2_000_000, extra)) for _ in range(5)]
        for thread in more:
            thread.start()
        deadline = time.monotonic() + 30
        while len(extra) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [(r, s) for r, s in extra if "at once" in r.text]
        assert len(refused) == 2, [r.text for r, _ in extra]
        for response, seconds in refused:
            assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
            assert seconds < WAIT_S
        assert_prompt(url)
        assert httpx.get(f"{url}/tracks/1/similar", timeout=30).status_code == 200
        for thread in more:
            thread.join()
        # Those taken in waited for the decoder, and no longer than allowed.
        waited = [(r, s) for r, s in extra if "at once" not in r.text]
        assert len(waited) == 3
        for response, seconds in waited:
            assert response.status_code == 503 and int(response.headers["retry-after"]) > 0, response.text
            assert "decoder" in response.json()["message"] and WAIT_S - 1 <= seconds < WAIT_S + 20
    finally:
        (tmp_path / "release").touch()
        first.join()
    assert decoding[0][0].status_code == 200


@pytest.mark.slow
def test_health_and_audio_answer_while_searches_wait_for_the_lock(url, monkeypatch):
    requests = 60  # more than anyio's shared pool has threads (40)
    inside, release = threading.Event(), threading.Event()
    real_similar = Catalog.similar

    def held_similar(self, *args, **kwargs):
        inside.set()
        release.wait(60)  # as a long search would, under the lock
        return real_similar(self, *args, **kwargs)

    monkeypatch.setattr(Catalog, "similar", held_similar)
    statuses: list[int] = []
    lock = threading.Lock()

    def similar(n: int) -> None:
        response = httpx.get(f"{url}/tracks/{1 + n % 3}/similar", params={"k": 2}, timeout=120)
        with lock:
            statuses.append(response.status_code)

    waiting = [threading.Thread(target=similar, args=(n,)) for n in range(requests)]
    for thread in waiting:
        thread.start()
    try:
        assert inside.wait(30)
        time.sleep(1)  # the others reach the server and wait
        assert not statuses
        assert_prompt(url)
    finally:
        release.set()
        for thread in waiting:
            thread.join()
    assert statuses == [200] * requests
