"""What a catalog holds: tracks by id, path or text, its counts and sizes, failures, duplicates."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mertsearch.catalog.core import Core
from mertsearch.catalog.layout import INDEX_DIR
from mertsearch.errors import TrackNotFoundError
from mertsearch.storage.store import safe_url
from mertsearch.storage.vector_index import saved_index_file


def track_id(cat: Core, track: int | str | os.PathLike) -> int:
    """The id of a track given by id, by a numeric string, or by its path."""
    if isinstance(track, str) and track.isdigit():
        track = int(track)
    if isinstance(track, int):
        if track not in cat.store.tracks_by_id([track]):
            raise TrackNotFoundError(f"no track with id {track} in {cat.directory}")
        return track
    row = cat.store.track_by_path(os.fsdecode(Path(track).expanduser().absolute()))
    if row is None:
        raise TrackNotFoundError(f"no track with path {track} in {cat.directory}")
    return row.id


def track_ids(cat: Core, tracks: Sequence[int | str | os.PathLike]) -> list[int]:
    """The ids of tracks given as for :func:`track_id`, in order; those given by id are checked in
    one query (a radio's history and exclusions run to hundreds)."""
    given = [int(track) if isinstance(track, str) and track.isdigit() else track for track in tracks]
    present = cat.store.present_track_ids(sorted({track for track in given if isinstance(track, int)}))
    return [track if isinstance(track, int) and track in present else track_id(cat, track) for track in given]


def track(cat: Core, track_id: int) -> dict:
    row = cat.store.tracks_by_id([track_id])[track_id]
    lead = row.duplicate_of or row.id
    group = cat.store.duplicate_groups([lead]).get(lead, [])
    return {**track_summary(row), "alternates": [m.path for m in group if m.id != row.id]}


def track_summary(row) -> dict:
    return {
        "track_id": row.id,
        "path": row.path,
        "title": row.title,
        "artist": row.artist,
        "album": row.album,
        "genre": row.genre,
        "year": row.year,
        "duration": round(row.duration, 3),
        "musicbrainz_track_id": row.musicbrainz_track_id,
        "musicbrainz_album_id": row.musicbrainz_album_id,
        "musicbrainz_artist_id": row.musicbrainz_artist_id,
    }


def find_tracks(cat: Core, text: str, *, limit: int, offset: int) -> dict:
    total, rows = cat.store.find_tracks(text, limit=limit, offset=offset)
    return {"total": total, "tracks": [track_summary(row) for row in rows]}


def duplicates(cat: Core) -> list[dict]:
    return [
        {
            "track_id": lead,
            "path": members[0].path,
            "alternates": [{"track_id": m.id, "path": m.path} for m in members[1:]],
        }
        for lead, members in sorted(cat.store.duplicate_groups().items())
    ]


def sampled_note(cat: Core) -> str | None:
    if cat.windows.sample_s is None:
        return None
    return (
        f"this catalog holds {cat.windows.sample_s:g} s of each track ({cat.windows.sampled_windows} windows "
        "spread over it): a clip finds a track only where it matches one of those parts"
    )


def info(cat: Core) -> dict:
    cat.take_up_meta()
    counts = cat.store.counts()
    spec = cat.manifest.encoder
    return {
        "catalog": str(cat.directory),
        "database": safe_url(cat.store.engine.url),
        "tracks": counts["tracks"],
        "windows": counts["windows"],
        "failed": counts["failed"],
        "audio_hours": round(counts["audio_hours"], 4),
        "model": spec.source,
        "repo_id": spec.repo_id,
        "revision": spec.revision,
        "weights_sha256": spec.weights_sha256,
        "layer": spec.layers[0] if len(spec.layers) == 1 else None,
        "layers": spec.layers,
        "kept_layers": spec.kept_layers,
        "transform": cat.manifest.transform.kind,
        "dim": spec.dim,
        "sample_rate": spec.sample_rate,
        "window_s": cat.windows.window_s,
        "hop_s": cat.windows.hop_s,
        "sample_s": cat.windows.sample_s,
        "index": {
            "factory": cat.manifest.index.factory,
            **({"vector_store": cat.manifest.index.vector_store} if cat.manifest.index.vector_store else {}),
            **{name: _index_info(cat, name) for name in ("tracks", "windows")},
        },
        "database_bytes": _database_bytes(cat),
        "layer_vectors_bytes": counts["layer_vector_bytes"],
        "created_by": cat.manifest.created_by,
        "created_at": cat.manifest.created_at,
        "calibration": None if cat.calibration is None else cat.calibration.summary(),
        "text": None if cat.manifest.text is None else _text_info(cat),
    }


def _text_info(cat: Core) -> dict:
    """Text search: the CLaMP 3 checkpoint, and how many tracks have their text vector (the rest
    get it at the next ingest)."""
    spec = cat.manifest.text
    return {
        "model": spec.source,
        "revision": spec.revision,
        "weights_sha256": spec.weights_sha256,
        "dim": spec.dim,
        "tracks": cat.store.count("text_vectors"),
    }


def _database_bytes(cat: Core) -> int:
    if cat.store.dialect == "sqlite":
        database = Path(cat.store.engine.url.database or "")
        return sum(p.stat().st_size for p in database.parent.glob(database.name + "*") if p.is_file())
    return cat.store.size_bytes()


def _index_info(cat: Core, name: str) -> dict:
    index = getattr(cat.indexes, name)
    saved = saved_index_file(cat.directory / INDEX_DIR, name)
    lists = index.lists_file if index.lists_file is not None and index.lists_file.is_file() else None
    return {
        "kind": index.factory,
        "vectors": len(index),
        "file": saved.name if saved else None,
        # An index merged on disk keeps its inverted lists in a file of their own.
        "lists_file": lists.name if lists is not None else None,
        "bytes": (saved.stat().st_size if saved else 0) + (lists.stat().st_size if lists is not None else 0),
    }
