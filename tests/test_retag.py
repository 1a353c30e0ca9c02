"""A file is known by its audio, not its tags: retagging (new tags, cover art, padding) stores the new
tags with no decoding and no model work, a moved or renamed file keeps its track, and a change to
the audio itself is embedded again. Catalogs made before the audio hash learn it without re-embedding."""

from __future__ import annotations

import os
import shutil

import mutagen
import numpy as np
import pytest
import sqlalchemy
from mutagen.apev2 import APEv2
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TIT2
from mutagen.mp4 import MP4, MP4Cover

from mertsearch import Catalog
from mertsearch.audio.identity import audio_sha256
from mertsearch.errors import AudioDecodeError
from mertsearch.storage.filters import Filters
from tests.helpers import SAMPLE_RATE, melody_track, write_audio

FORMATS = ["flac", "mp3", "ogg", "opus", "m4a", "wav"]
COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400  # 100 kB: tag blocks grow past their padding


def retag(path, title: str, *, cover: bool = True) -> None:
    """Change a file's title (and add a cover) as a tagger would, in the format's own tag blocks."""
    path = str(path)
    if path.endswith(".wav"):
        tagged = mutagen.File(path)
        if tagged.tags is None:
            tagged.add_tags()
        tagged.tags.add(TIT2(encoding=3, text=[title]))
        tagged.save()
        return
    tagged = mutagen.File(path, easy=True)
    if tagged.tags is None:
        tagged.add_tags()
    tagged["title"] = title
    tagged.save()
    if not cover:
        return
    if path.endswith(".mp3"):
        tags = ID3(path)
        tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))
        tags.save(path)
        ape = APEv2()
        ape["Title"] = title
        ape.save(path)
    elif path.endswith(".flac"):
        flac = FLAC(path)
        picture = Picture()
        picture.data, picture.mime, picture.type = COVER, "image/png", 3
        flac.add_picture(picture)
        flac.save()
    elif path.endswith(".m4a"):
        mp4 = MP4(path)
        mp4["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
        mp4.save()


def write_tune(path, seed: int, gain: float = 1.0) -> str:
    rate = 48000 if path.suffix == ".opus" else SAMPLE_RATE  # Opus's encoder takes 48 kHz
    return str(write_audio(path, melody_track(seed, 8, rate) * gain, rate))


def write_formats(folder) -> dict[str, str]:
    return {ext: write_tune(folder / f"track.{ext}", 40 + n) for n, ext in enumerate(FORMATS)}


@pytest.mark.parametrize("ext", FORMATS)
def test_the_audio_hash_ignores_tags_and_covers_and_follows_the_audio(tmp_path, ext):
    path = write_formats(tmp_path)[ext]
    before, size = audio_sha256(path), os.path.getsize(path)
    retag(path, "a title long enough to outgrow the padding " * 200)
    assert os.path.getsize(path) != size
    assert audio_sha256(path) == before
    retag(path, "short", cover=False)
    assert audio_sha256(path) == before
    assert audio_sha256(write_tune(tmp_path / f"other.{ext}", 40 + FORMATS.index(ext), gain=0.9)) != before


def test_a_file_without_audio_has_no_audio_hash(tmp_path):
    (tmp_path / "bad.mp3").write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioDecodeError):
        audio_sha256(tmp_path / "bad.mp3")


class ModelCalls:
    """Counts the windows a catalog's model embeds (decoding runs inline, in this process)."""

    def __init__(self, cat: Catalog, monkeypatch) -> None:
        self.windows = 0
        encoder = cat.encoder
        embed = encoder.embed_windows

        def counted(samples):
            self.windows += len(samples)
            return embed(samples)

        monkeypatch.setattr(encoder, "embed_windows", counted)


def _index(cat: Catalog, *paths, decoders: int = 0):
    return cat.index_paths(paths, decoders=decoders)


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_retagging_every_file_stores_the_tags_without_the_model(tmp_path, monkeypatch, backend):
    music = tmp_path / "music"
    paths = write_formats(music)
    options = {}
    if backend == "milvus":
        pytest.importorskip("milvus_lite")
        options["vector_store"] = f"milvus://{tmp_path / 'milvus.db'}"
    with Catalog.create(tmp_path / "cat", model="spectral", **options) as cat:
        assert _index(cat, music).added == len(FORMATS)
        ids = {t["path"]: t["track_id"] for t in cat.find_tracks("")["tracks"]}
        calls = ModelCalls(cat, monkeypatch)
        for ext, path in paths.items():
            retag(path, f"Титул {ext}")
            artist = mutagen.File(path, easy=True)
            if not path.endswith(".wav"):
                artist["artist"] = "Кино"
                artist.save()
        report = _index(cat, music)
        assert (report.retagged, report.updated, report.added, report.unchanged) == (len(FORMATS), 0, 0, 0)
        assert calls.windows == 0 and report.audio_seconds == 0
        found = cat.find_tracks("титул")["tracks"]
        assert {t["path"]: t["track_id"] for t in found} == ids
        assert {t["title"] for t in found} == {f"Титул {ext}" for ext in FORMATS}
        # Filters see the new tags (on Milvus, its scalar fields were written again).
        seed = paths["wav"]
        kino = cat.similar(seed, k=10, filters=Filters(artist=("кино",)))
        assert {r.path for r in kino} == {p for ext, p in paths.items() if ext != "wav"}
        # Indexing again changes nothing; a change to the audio is embedded again.
        assert _index(cat, music).unchanged == len(FORMATS)
        write_tune(music / "track.flac", 99)
        report = _index(cat, music)
        assert (report.updated, report.unchanged, report.retagged) == (1, len(FORMATS) - 1, 0)
        assert calls.windows > 0
        assert cat.track(paths["flac"])["track_id"] == ids[paths["flac"]]


@pytest.mark.parametrize("decoders", [0, 1])
def test_a_moved_or_renamed_file_keeps_its_track_and_vectors(tmp_path, monkeypatch, decoders):
    music = tmp_path / "music"
    paths = write_formats(music)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        _index(cat, music)
        before = cat.track(paths["mp3"])["track_id"], cat.track(paths["ogg"])["track_id"]
        vectors = cat.store.windows_of(list(before))
        calls = ModelCalls(cat, monkeypatch)
        (music / "sub").mkdir()
        shutil.move(paths["mp3"], music / "sub" / "moved.mp3")
        shutil.move(paths["ogg"], music / "renamed.ogg")
        retag(music / "renamed.ogg", "renamed and retagged")
        report = _index(cat, music, decoders=decoders)
        assert (report.moved, report.removed, report.added, report.updated) == (2, 0, 0, 0)
        assert calls.windows == 0
        after = cat.track(music / "sub" / "moved.mp3")["track_id"], cat.track(music / "renamed.ogg")["track_id"]
        assert after == before
        assert cat.track(music / "renamed.ogg")["title"] == "renamed and retagged"
        for track_id, (_times, stored) in cat.store.windows_of(list(after)).items():
            np.testing.assert_array_equal(stored, vectors[track_id][1])
        assert cat.store.count("tracks") == len(FORMATS)
        assert cat.verify() == []


def test_a_catalog_without_audio_hashes_learns_them_without_embedding(tmp_path, monkeypatch):
    music = tmp_path / "music"
    paths = write_formats(music)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        _index(cat, music)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'cat' / 'catalog.db'}")
    with engine.begin() as connection:  # as an older version left it
        connection.execute(sqlalchemy.text("UPDATE tracks SET audio_sha256 = NULL"))
    engine.dispose()
    with Catalog.open(tmp_path / "cat") as cat:
        calls = ModelCalls(cat, monkeypatch)
        report = _index(cat, music)
        assert (report.unchanged, report.updated) == (len(FORMATS), 0)
        assert calls.windows == 0
        retag(paths["m4a"], "after the upgrade")
        report = _index(cat, music)
        assert (report.retagged, report.updated, report.unchanged) == (1, 0, len(FORMATS) - 1)
        assert calls.windows == 0


def test_a_file_named_alone_that_moved_keeps_its_track(tmp_path, monkeypatch):
    """As the beets plugin indexes: each file by its path, no folder, so nothing counts as gone
    from a folder; the file's audio still finds the track whose file is no longer there."""
    music = tmp_path / "music"
    paths = write_formats(music)
    with Catalog.create(tmp_path / "cat", model="spectral") as cat:
        _index(cat, *paths.values())
        before = cat.track(paths["flac"])["track_id"]
        calls = ModelCalls(cat, monkeypatch)
        (music / "Artist").mkdir()
        shutil.move(paths["flac"], music / "Artist" / "moved.flac")
        shutil.copy(music / "Artist" / "moved.flac", music / "copy.flac")  # a copy whose original stays
        report = _index(cat, music / "Artist" / "moved.flac", music / "copy.flac", decoders=1)
        assert (report.moved, report.added) == (1, 1)
        assert cat.track(music / "Artist" / "moved.flac")["track_id"] == before
        assert calls.windows > 0  # the copy was embedded: its original's file is still there
