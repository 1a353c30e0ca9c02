"""manifest.json: everything that shapes a catalog's vectors, checked whenever it is opened."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mertsearch.config import FORMAT, Manifest
from mertsearch.errors import CatalogMismatchError

MANIFEST = "manifest.json"
__all__ = ["FORMAT", "MANIFEST", "Manifest", "read_manifest", "write_manifest", "check_compatible"]

# Fields whose difference means the vectors are not comparable. Where the model comes from
# (its path or repo id) may differ: the weights' hash is what identifies it.
SHAPING_FIELDS = {
    "encoder": ["weights_sha256", "architecture", "sample_rate", "do_normalize", "layers", "kept_layers", "dim"],
    "windows": ["window_s", "hop_s", "min_tail_s", "min_duration_s", "sample_s"],
    "pooling": ["window", "track"],
}


def read_manifest(directory: Path) -> Manifest | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    return Manifest.from_dict(json.loads(path.read_text()))


# The temporary files write_manifest leaves for an instant in a catalog's directory.
TEMP_PREFIX = ".manifest-"


def write_manifest(directory: Path, manifest: Manifest, *, new: bool = False) -> None:
    """Write atomically: a crash leaves the old manifest or the new one, never half of one.

    With ``new`` the manifest must not exist yet: of two processes creating the same catalog at
    once, one writes it and the other gets FileExistsError (and should open what the first made).
    """
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(manifest.to_dict(), out, indent=2, sort_keys=True)
            out.write("\n")
        if new:
            os.link(tmp, directory / MANIFEST)  # fails if the name exists, unlike a rename
        else:
            os.replace(tmp, directory / MANIFEST)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def differences(stored: Manifest, wanted: Manifest) -> list[str]:
    """Readable differences in the fields that shape vectors, e.g. 'encoder.layers: [7] in the catalog, [5] asked'."""
    stored, wanted = stored.to_dict(), wanted.to_dict()
    out = []
    for section, fields in SHAPING_FIELDS.items():
        for field in fields:
            have = stored.get(section, {}).get(field)
            want = wanted.get(section, {}).get(field)
            if have != want:
                out.append(f"{section}.{field}: {have!r} in the catalog, {want!r} asked")
    return out


def check_compatible(stored: Manifest, wanted: Manifest, directory: Path) -> None:
    diffs = differences(stored, wanted)
    if diffs:
        raise CatalogMismatchError(
            f"catalog {directory} was built with other settings ({'; '.join(diffs)}); "
            "use a new --catalog directory for these settings"
        )
