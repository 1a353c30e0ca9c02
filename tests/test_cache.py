"""The weights hash is read once per version of the file: a hub blob's name, or the cache's entry."""

import hashlib
import os
import shutil

import pytest

import mertsearch.encoder.checkpoint as checkpoint_module
from mertsearch import Catalog, CatalogMismatchError, cache
from mertsearch.encoder.checkpoint import WEIGHTS_CACHE, resolve_checkpoint
from tests.helpers import SAMPLE_RATE, tone_track, write_tiny_mert


@pytest.fixture
def hashed(monkeypatch) -> list:
    """The files hashed for their weights, in order."""
    calls = []
    real = checkpoint_module.sha256_file

    def counting(path):
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(checkpoint_module, "sha256_file", counting)
    return calls


def _search(directory, model=None) -> None:
    with Catalog.open(directory, **({"model": str(model)} if model else {})) as cat:
        assert cat.search((tone_track(1, 6, SAMPLE_RATE), SAMPLE_RATE), k=1)


def test_a_local_checkpoint_is_hashed_once_until_its_weights_change(tmp_path, tiny_model, music, hashed):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    with Catalog.create(tmp_path / "cat", model=str(model), layer=3) as cat:
        cat.index_paths([music / "a.wav"], decoders=0)
    assert hashed == ["pytorch_model.bin"]
    _search(tmp_path / "cat", model)
    _search(tmp_path / "cat")  # the weights where the catalog says they are
    assert hashed == ["pytorch_model.bin"]
    weights = model / "pytorch_model.bin"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    _search(tmp_path / "cat", model)  # the same content, touched: hashed again, still the catalog's
    assert hashed == ["pytorch_model.bin"] * 2
    other, _ = write_tiny_mert(tmp_path / "other", seed=1)
    shutil.copyfile(other / "pytorch_model.bin", weights)
    with pytest.raises(CatalogMismatchError, match="weights_sha256"):
        Catalog.open(tmp_path / "cat", model=str(model))
    assert hashed == ["pytorch_model.bin"] * 3


def test_weights_in_the_hub_cache_are_known_by_their_blob_name_without_reading(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--m-a-p--MERT-v1-95M"
    snapshot, _ = write_tiny_mert(repo / "snapshots" / "12af15fef9d0ac838c3f475bfbbf26d2060dd4f5")
    digest = hashlib.sha256((snapshot / "pytorch_model.bin").read_bytes()).hexdigest()
    (repo / "blobs").mkdir()
    os.replace(snapshot / "pytorch_model.bin", repo / "blobs" / digest)
    (snapshot / "pytorch_model.bin").symlink_to(f"../../blobs/{digest}")
    monkeypatch.setattr(checkpoint_module, "sha256_file", lambda path: pytest.fail(f"read {path}"))
    assert resolve_checkpoint(str(snapshot)).weights_sha256() == digest
    assert not cache.cache_dir().exists()  # nothing to keep


def test_a_corrupt_or_unwritable_cache_only_costs_a_new_hash(tmp_path, tiny_model, monkeypatch, hashed):
    expected = hashlib.sha256((tiny_model / "pytorch_model.bin").read_bytes()).hexdigest()
    checkpoint = resolve_checkpoint(str(tiny_model))
    cache.cache_dir().mkdir(parents=True)
    (cache.cache_dir() / WEIGHTS_CACHE).write_text('{"truncated": ')
    assert checkpoint.weights_sha256() == expected
    assert checkpoint.weights_sha256() == expected
    assert len(hashed) == 1  # the second came from the rewritten cache
    (cache.cache_dir() / WEIGHTS_CACHE).write_text(f'{{"{tiny_model.resolve()}/pytorch_model.bin": "not a dict"}}')
    assert checkpoint.weights_sha256() == expected
    monkeypatch.setenv(cache.CACHE_ENV, str(tiny_model / "config.json"))  # a file, not a folder
    assert checkpoint.weights_sha256() == expected
    assert checkpoint.weights_sha256() == expected
    assert len(hashed) == 4


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "given"))
    assert cache.cache_dir() == tmp_path / "given"
    monkeypatch.setenv(cache.CACHE_ENV, "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "mertsearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "mertsearch"
