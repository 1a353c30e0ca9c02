"""manifest.json read into a typed Manifest and written back: the same document, nothing lost."""

import json

from mertsearch.config import EncoderSpec, Manifest, TransformSpec, WindowSettings
from mertsearch.storage.manifest import MANIFEST, read_manifest, write_manifest

WRITTEN = {
    "created_at": "2026-12-02T09:19:01Z",
    "created_by": "mertsearch 0.1.0",
    "encoder": {
        "architecture": "mert",
        "dim": 768,
        "do_normalize": False,
        "kept_layers": [],
        "layers": [7],
        "num_layers": 12,
        "repo_id": "m-a-p/MERT-v1-95M",
        "revision": "abc",
        "sample_rate": 24000,
        "source": "mert-v1-95m",
        "weights_sha256": "9e" * 32,
    },
    "format": 1,
    "index": {"factory": "auto", "metric": "inner_product", "vectors": "tracks and windows"},
    "pooling": {
        "track": "mean of window vectors, L2-normalised",
        "window": "mean over frames of each layer, L2-normalised; several layers: their mean, L2-normalised",
    },
    "transform": {"file": "transform-1.npz", "fitted_on_tracks": 12, "kind": "center"},
    "windows": {"hop_s": 2.5, "min_duration_s": 1.0, "min_tail_s": 1.0, "window_s": 5.0},
}


def test_a_manifest_is_written_back_byte_for_byte(tmp_path):
    text = json.dumps(WRITTEN, indent=2, sort_keys=True) + "\n"
    (tmp_path / MANIFEST).write_text(text)
    manifest = read_manifest(tmp_path)
    assert manifest.encoder.layers == [7] and manifest.windows == WindowSettings(5.0, 2.5)
    assert manifest.transform == TransformSpec("center", "transform-1.npz", 12) and manifest.database is None
    write_manifest(tmp_path, manifest)
    assert (tmp_path / MANIFEST).read_text() == text


def test_an_old_manifest_gets_layer_sets_and_no_transform(tmp_path):
    old = json.loads(json.dumps(WRITTEN))
    old["encoder"]["layer"] = old["encoder"].pop("layers")[0]
    del old["encoder"]["kept_layers"], old["transform"]
    manifest = Manifest.from_dict(old)
    assert manifest.encoder.layers == [7] and manifest.encoder.kept_layers == []
    assert manifest.transform == TransformSpec()


def test_what_a_newer_version_wrote_is_kept(tmp_path):
    newer = json.loads(json.dumps(WRITTEN))
    newer["encoder"]["quantised"] = True
    newer["shards"] = {"count": 4}
    manifest = Manifest.from_dict(newer)
    assert isinstance(manifest.encoder, EncoderSpec)
    assert manifest.to_dict() == newer
