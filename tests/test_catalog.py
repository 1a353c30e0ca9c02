"""Indexing and searching a catalog through the Python API, with a tiny checkpoint."""

import os
import shutil

import numpy as np
import pytest

from mertsearch import Catalog, CatalogMismatchError, CatalogNotFoundError, TrackNotFoundError
from mertsearch.encoder.mert import MertEncoder
from mertsearch.storage.vector_index import saved_index_file
from tests.helpers import SAMPLE_RATE, assert_consistent, tone_track, write_audio


def _open(tmp_path, model, **kw) -> Catalog:
    return Catalog.create(tmp_path / "cat", model=str(model), layer=3, **kw)


def test_index_then_search_finds_the_excerpt_first_with_its_position(tmp_path, tiny_model, music, database):
    with _open(tmp_path, tiny_model) as cat:
        report = cat.index_paths([music])
        assert (report.added, report.failed) == (6, [])
        source = music / "sub" / "f.flac"  # 24 s long
        clip = write_audio(
            tmp_path / "clip.wav", tone_track(5, 24, SAMPLE_RATE)[:, 10 * SAMPLE_RATE : 18 * SAMPLE_RATE], SAMPLE_RATE
        )
        results = cat.search(clip, k=3)
        assert results[0].path == str(source)
        # The clip is 10-18 s of a steady tone, so any place where it fits is as good as another
        # (tests/test_offset.py places tunes that tell their stretches apart).
        assert 0.0 <= results[0].offset <= 24.0 - 8.0
        assert 0.0 <= results[0].match.start < results[0].match.end <= 24.0 + 0.01
        assert results[0].score >= results[1].score >= results[2].score


def test_search_by_path_bytes_or_array_agree(tmp_path, tiny_model, music):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        samples = tone_track(2, 8, SAMPLE_RATE)
        clip = write_audio(tmp_path / "clip.wav", samples, SAMPLE_RATE)
        by_path = cat.search(clip, k=4)
        by_bytes = cat.search(clip.read_bytes(), k=4)
        by_array = cat.search((samples, SAMPLE_RATE), k=4)
        assert [r.track_id for r in by_path] == [r.track_id for r in by_bytes] == [r.track_id for r in by_array]
        np.testing.assert_allclose([r.score for r in by_path], [r.score for r in by_array], atol=1e-3)


def test_start_end_choose_part_of_the_query(tmp_path, tiny_model, music):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        whole = cat.embed(music / "sub" / "f.flac")
        part = cat.embed(music / "sub" / "f.flac", start=5.0, end=10.0)
        assert part.duration == pytest.approx(5.0, abs=0.01)
        # The part is the 5-10 s window of the whole track (up to the resampler restarting at the seek point).
        similarities = whole.window_vectors @ part.window_vectors[0]
        assert int(np.argmax(similarities)) == 1 and similarities[1] > 0.999


def test_similar_leaves_out_the_seed_and_takes_ids_or_paths(tmp_path, tiny_model, music, database):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        seed = cat.track_id(music / "c.mp3")
        results = cat.similar(seed, k=10)
        assert len(results) == 5 and seed not in [r.track_id for r in results]
        assert [r.track_id for r in cat.similar(str(music / "c.mp3"), k=10)] == [r.track_id for r in results]
        with pytest.raises(TrackNotFoundError):
            cat.similar(999)


def test_reindex_skips_unchanged_adds_new_and_reembeds_changed(tmp_path, tiny_model, music, database):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        changed = music / "a.wav"
        old_id = cat.track_id(changed)
        old_vector = cat.store.tracks_by_id([old_id])[old_id].vector
        write_audio(changed, tone_track(40, 10, SAMPLE_RATE), SAMPLE_RATE)
        write_audio(music / "new.flac", tone_track(41, 7, SAMPLE_RATE), SAMPLE_RATE)
        touched = music / "b.flac"
        os.utime(touched, None)  # new mtime, same content: recognised by its hash
        report = cat.index_paths([music])
        assert (report.added, report.updated, report.unchanged) == (1, 1, 5)
        assert cat.track_id(changed) == old_id  # ids stay valid
        assert cat.store.tracks_by_id([old_id])[old_id].vector != old_vector
        assert_consistent(cat, 7)


def test_a_bad_file_is_recorded_and_the_run_goes_on(tmp_path, tiny_model, music, database):
    (music / "broken.mp3").write_bytes(b"\xff\xfb\x90\x00" + os.urandom(3000))
    (music / "empty.flac").write_bytes(b"")
    write_audio(music / "silent.wav", np.zeros((1, SAMPLE_RATE * 3), np.float32), SAMPLE_RATE)
    with _open(tmp_path, tiny_model) as cat:
        report = cat.index_paths([music])
        assert report.added == 6
        reasons = {os.path.basename(f.path): f.reason for f in report.failed}
        assert set(reasons) == {"broken.mp3", "empty.flac", "silent.wav"}
        assert "empty" in reasons["empty.flac"] and "silent" in reasons["silent.wav"]
        assert len(cat.failures()) == 3

        again = cat.index_paths([music])  # not retried while unchanged
        assert (again.skipped_failed, again.failed, again.unchanged) == (3, [], 6)
        retried = cat.index_paths([music], retry_failed=True)
        assert len(retried.failed) == 3

        write_audio(music / "silent.wav", tone_track(9, 6, SAMPLE_RATE), SAMPLE_RATE)  # fixed by the user
        fixed = cat.index_paths([music])
        assert fixed.added == 1 and len(cat.failures()) == 2
        assert_consistent(cat, 7)


def test_an_interrupted_run_picks_up_where_it_stopped(tmp_path, tiny_model, music, monkeypatch):
    real = MertEncoder.embed_windows
    calls = {"n": 0}

    def crash_on_fourth(self, windows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the middle of embedding
        return real(self, windows)

    monkeypatch.setattr(MertEncoder, "embed_windows", crash_on_fourth)
    with _open(tmp_path, tiny_model) as cat, pytest.raises(KeyboardInterrupt):
        cat.index_paths([music])
    monkeypatch.setattr(MertEncoder, "embed_windows", real)
    with Catalog.open(tmp_path / "cat") as cat:
        stored = cat.store.count("tracks")
        assert 0 < stored < 6
        report = cat.index_paths([music])
        assert (report.added, report.unchanged) == (6 - stored, stored)
        assert_consistent(cat, 6)


def test_a_stale_or_missing_index_is_rebuilt_from_stored_vectors(tmp_path, tiny_model, music, database):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        expected = [r.track_id for r in cat.similar(1, k=5)]
    os.remove(saved_index_file(tmp_path / "cat" / "index"))
    with Catalog.open(tmp_path / "cat") as cat:
        assert [r.track_id for r in cat.similar(1, k=5)] == expected
        assert cat._encoder is None  # rebuilt without the model
        assert saved_index_file(tmp_path / "cat" / "index") is None  # in memory: a reader never writes
        cat.index_paths([music])  # the next writer saves it
        assert saved_index_file(tmp_path / "cat" / "index") is not None


def test_opening_with_other_settings_names_the_difference(tmp_path, tiny_model, music):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music / "a.wav"])
    with pytest.raises(CatalogMismatchError, match=r"encoder.layers: \[3\] in the catalog, \[2\] asked"):
        Catalog.open(tmp_path / "cat", layer=2)
    with pytest.raises(CatalogMismatchError, match=r"windows.hop_s: 5.0 in the catalog, 2.5 asked"):
        Catalog.open(tmp_path / "cat", hop=2.5)
    from tests.helpers import write_tiny_mert

    other, _ = write_tiny_mert(tmp_path / "other-model", seed=1)
    with pytest.raises(CatalogMismatchError, match="weights_sha256"):
        Catalog.open(tmp_path / "cat", model=str(other))
    # The same weights in another place are fine: identity is the content.
    moved = shutil.copytree(tiny_model, tmp_path / "moved-model")
    Catalog.open(tmp_path / "cat", model=str(moved), layer=3).close()


def test_two_processes_creating_one_catalog_never_overwrite_each_others_manifest(tmp_path, tiny_model, monkeypatch):
    """The other process writes its manifest between this one's emptiness check and its own write."""
    import mertsearch.catalog.layout as layout

    real_check = layout.check_new_database
    raced = []

    def meanwhile(url):
        if not raced:
            raced.append(True)
            Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3).close()  # the other process
        return real_check(url)

    monkeypatch.setattr(layout, "check_new_database", meanwhile)
    with pytest.raises(CatalogMismatchError, match=r"encoder.layers: \[3\] in the catalog, \[2\] asked"):
        Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=2)
    raced.clear()
    with Catalog.create(tmp_path / "same", model=str(tiny_model), layer=3) as cat:  # same settings: it opens theirs
        assert cat.manifest.encoder.layers == [3]
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.manifest.encoder.layers == [3]
    assert not list((tmp_path / "cat").glob(".manifest-*"))


def test_a_missing_catalog_is_an_error(tmp_path):
    with pytest.raises(CatalogNotFoundError, match="no catalog"):
        Catalog.open(tmp_path / "nothing")


def test_vectors_are_normalised_and_stored_per_window(tmp_path, tiny_model, music):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music / "sub" / "f.flac"])  # 24 s: windows at 0, 5, 10, 15 and 19 (tail)
        track_id = cat.track_id(music / "sub" / "f.flac")
        times, vectors = cat.store.windows_of([track_id])[track_id]
        assert times[:, 0].tolist() == [0, 5, 10, 15, 19]
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        embedding = cat.embed(music / "sub" / "f.flac")
        np.testing.assert_allclose(vectors, embedding.window_vectors, atol=1e-6)
        mean = vectors.mean(axis=0)
        stored = np.frombuffer(cat.store.tracks_by_id([track_id])[track_id].vector, np.float32)
        np.testing.assert_allclose(stored, mean / np.linalg.norm(mean), atol=1e-6)


def test_music2vec_catalog_uses_its_30_second_context(tmp_path, music):
    from tests.helpers import write_tiny_mert

    model, _ = write_tiny_mert(tmp_path / "music2vec", kind="data2vec")
    with Catalog.create(tmp_path / "cat", model=str(model), layer=2) as cat:
        assert cat.manifest.windows.window_s == 30.0 and cat.manifest.encoder.architecture == "data2vec-audio"
        assert cat.index_paths([music]).added == 6
        track_id = cat.track_id(music / "sub" / "f.flac")  # 24 s: one window of its own length
        times, _ = cat.store.windows_of([track_id])[track_id]
        assert times.tolist() == [[0.0, 24.0]]
        assert cat.similar(track_id, k=3)[0].track_id != track_id


def test_a_damaged_index_file_is_rebuilt_from_stored_vectors(tmp_path, tiny_model, music):
    with _open(tmp_path, tiny_model) as cat:
        cat.index_paths([music])
        expected = [r.track_id for r in cat.similar(1, k=5)]
    saved = saved_index_file(tmp_path / "cat" / "index")
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with Catalog.open(tmp_path / "cat") as cat:
        assert [r.track_id for r in cat.similar(1, k=5)] == expected  # built in memory
        assert "the tracks index is missing or older than the database (rebuild it)" in cat.verify()
        cat.repair()
        assert cat.verify() == []


def test_an_empty_catalog_answers_a_clip_with_nothing(tmp_path, tiny_model, music):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model)) as cat:
        assert cat.search(music / "a.wav", k=3) == []
        assert cat.search(music / "a.wav", k=3, mode="tracks") == []
