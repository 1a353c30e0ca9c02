"""Concurrent searches over HTTP while another process indexes into the same catalog: none lost."""

import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from tests.helpers import tone_track, write_audio

from .servers import running

CLIENTS = 4


@pytest.mark.slow
def test_searches_during_an_ingest_all_succeed_and_see_the_new_tracks(tmp_path, tiny_model, music_source):
    shutil.copytree(music_source, tmp_path / "music")
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([tmp_path / "music"], decoders=0)
    for n in range(16):
        write_audio(tmp_path / "more" / f"{n:02d}.flac", tone_track(200 + n, 10, 44100), 44100)
    clip = (tmp_path / "music" / "a.wav").read_bytes()

    statuses: list[int] = []
    problems: list[str] = []
    ingest_done = threading.Event()

    def client(number: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            sent = 0
            while not ingest_done.is_set() or sent < 10:
                kind = (number + sent) % 3
                try:
                    if kind == 0:
                        response = http.post("/search", files={"file": ("a.wav", clip)}, data={"k": "5"})
                    elif kind == 1:
                        response = http.get(f"/tracks/{1 + sent % 6}/similar", params={"k": 5})
                    else:
                        response = http.get("/tracks", params={"q": "", "limit": 50})
                    statuses.append(response.status_code)
                    if response.status_code != 200:
                        problems.append(response.text[:300])
                except httpx.HTTPError as exc:  # a dropped connection is a lost request
                    problems.append(repr(exc))
                sent += 1

    with running(Settings(catalog=tmp_path / "cat")) as url:
        threads = [threading.Thread(target=client, args=(n, url)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        command = [sys.executable, "-m", "mertsearch.cli", "index", str(tmp_path / "more"), "--catalog"]
        ingest = subprocess.run([*command, str(tmp_path / "cat"), "--json"], capture_output=True, text=True)
        ingest_done.set()
        for thread in threads:
            thread.join(timeout=120)
        assert ingest.returncode == 0, ingest.stderr[-2000:]
        assert not problems and len(statuses) >= CLIENTS * 10, problems[:3]
        # The server follows the writer: the new tracks are searchable without a restart.
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/info").json()["tracks"] < 22 and time.monotonic() < deadline:
            time.sleep(0.2)
        found = {r["track_id"] for r in httpx.get(f"{url}/tracks/7/similar", params={"k": 30}).json()["results"]}
        assert len(found) == 21 and max(found) == 22
