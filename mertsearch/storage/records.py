"""What the store takes and gives back: track records, vectors as blobs, and URLs fit to show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import URL, make_url


def safe_url(url: str | URL) -> str:
    """The URL without its password, fit to record in a manifest or print."""
    return make_url(url)._replace(password=None).render_as_string(hide_password=False)


@dataclass(frozen=True)
class TrackRecord:
    """What the indexer hands the store for one file."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    duration: float
    tags: dict
    vector: np.ndarray
    window_starts: np.ndarray
    window_ends: np.ndarray
    window_vectors: np.ndarray
    layer_vectors: np.ndarray | None = None  # (layers, dim), when the catalog keeps all layers
    window_layer_vectors: np.ndarray | None = None  # (windows, layers, dim)
    # The leading track of the recording this file also holds (its own id: stored again, the file
    # still holds the recording it leads).
    duplicate_of: int | None = None
    audio_sha256: str | None = None  # the hash of its audio stream (mertsearch.audio.identity)
    text_vector: np.ndarray | None = None  # in CLaMP 3's text and music space, in catalogs with text search


@dataclass(frozen=True)
class StoredTrack:
    """What put_track changed: the track's id, whether it replaced an older version, window ids."""

    track_id: int
    replaced: bool
    old_window_ids: list[int]
    window_ids: list[int]


def chunks(ids: Sequence[int], size: int = 10000) -> list[list[int]]:
    """Id lists cut below the limits on bound parameters (SQLite's 32766, PostgreSQL's 65535)."""
    ids = [int(i) for i in ids]
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def to_blob(vector: np.ndarray | None) -> bytes | None:
    if vector is None:
        return None
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
