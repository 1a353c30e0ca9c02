"""The music library the Subsonic pass-through's tests serve: generated tunes, tagged, indexed in
a catalog and scanned by a real Supysonic server, with the pass-through in front of it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mutagen
import numpy as np

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.subsonic import SubsonicSettings
from tests.helpers import DISCERNING, SAMPLE_RATE, melody_track, write_audio, write_tiny_mert
from tests.servers import running
from tests.supysonic import PASSWORD, USER, supysonic

AUTH = {"u": USER, "p": PASSWORD, "c": "tests", "v": "1.12.0"}


def tag(path, artist: str, title: str) -> None:
    tagged = mutagen.File(str(path), easy=True)
    tagged["artist"], tagged["title"], tagged["album"] = artist, title, f"{artist} album"
    tagged.save()


@contextmanager
def served_library(root: Path) -> Iterator[tuple[str, str, dict[str, dict], Path, Path]]:
    """Eight tunes in the Subsonic library and the catalog; "echo" starts with 14 s of "tune0" (its
    nearest by construction); "extra" only upstream (added after indexing); "hidden" and a copy of
    "tune2" (leading its recording) only in the catalog. Yields (proxy URL, upstream URL, upstream
    songs by title, music folder, catalog)."""
    music = root / "music"
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    for n in range(7):
        path = write_audio(
            music / f"Artist{n % 3}" / f"tune{n}.flac", melody_track(300 + n, 14 + n, SAMPLE_RATE), 44100
        )
        tag(path, f"Artist{n % 3}", f"tune{n}")
    first = melody_track(300, 14, SAMPLE_RATE)
    echo = np.concatenate([first[:, : 14 * SAMPLE_RATE], melody_track(399, 10, SAMPLE_RATE)], axis=1)
    tag(write_audio(music / "Artist9" / "echo.flac", echo, SAMPLE_RATE), "Artist9", "echo")
    tag(write_audio(root / "other" / "hidden.flac", melody_track(398, 15, SAMPLE_RATE), SAMPLE_RATE), "X", "hidden")
    # A lossless copy of tune2 the upstream lacks, indexed first so that it leads the recording
    # (a result may show either file, with the other as an alternate).
    shutil.copy(music / "Artist2" / "tune2.flac", root / "other" / "tune2-copy.flac")
    with Catalog.create(root / "cat", model=str(model), layer=2, hop=2.5) as cat:
        assert cat.index_paths([root / "other"]).added == 2
        assert cat.index_paths([music]).added == 8
        cat.reindex(transform="center")
        assert [(Path(g["path"]).name, [Path(a["path"]).name for a in g["alternates"]]) for g in cat.duplicates()] == [
            ("tune2-copy.flac", ["tune2.flac"])
        ]
    tag(write_audio(music / "Artist9" / "extra.flac", melody_track(397, 12, SAMPLE_RATE), SAMPLE_RATE), "Y", "extra")
    # A long raw WAV to stream (the catalog need not know it).
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 60 * SAMPLE_RATE)).astype(np.float32)
    write_audio(music / "Long" / "long.wav", noise, SAMPLE_RATE)
    with supysonic(music, root / "supysonic") as upstream:
        settings = Settings(catalog=root / "cat", subsonic=SubsonicSettings(url=upstream, user=USER, password=PASSWORD))
        with running(settings) as proxy:
            synced(proxy)
            found = httpx.get(f"{upstream}/rest/search3", params={**AUTH, "f": "json", "query": "", "songCount": 500})
            songs = {s["title"]: s for s in found.json()["subsonic-response"]["searchResult3"]["song"]}
            yield proxy, upstream, songs, music, root / "cat"


def synced(proxy: str) -> None:
    """Wait for the pass-through's first sync (it runs while the server answers)."""
    deadline = time.monotonic() + 60
    while httpx.get(f"{proxy}/health").json()["subsonic"]["synced"] is None:
        assert time.monotonic() < deadline, "the first sync did not end"
        time.sleep(0.05)
