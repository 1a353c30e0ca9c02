from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures import tone_track, write_audio, write_tiny_mert

SAMPLE_RATE = 44100


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random MERT checkpoint in the hub layout (4 layers x 32 dims)."""
    directory, _ = write_tiny_mert(tmp_path_factory.mktemp("models") / "tiny-mert")
    return directory


@pytest.fixture(scope="session")
def music_source(tmp_path_factory) -> Path:
    """Six distinct generated tracks of 9-24 s in several formats, with tags on some."""
    folder = tmp_path_factory.mktemp("music-source")
    names = ["a.wav", "b.flac", "c.mp3", "d.ogg", "sub/e.wav", "sub/f.flac"]
    for seed, name in enumerate(names):
        write_audio(folder / name, tone_track(seed, 9 + 3 * seed, SAMPLE_RATE), SAMPLE_RATE)
    return folder


@pytest.fixture
def music(tmp_path, music_source) -> Path:
    """A fresh copy of the generated tracks, free to change."""
    folder = tmp_path / "music"
    shutil.copytree(music_source, folder)
    return folder
