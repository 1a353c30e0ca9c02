"""A catalog: a directory holding the metadata database, the FAISS index and the manifest.

catalog/
  catalog.db        SQLite: tracks, windows and their vectors, failures (the source of truth)
  index/            tracks-v<N>.faiss, derived from the stored vectors, rebuilt when stale
  manifest.json     everything that shapes the vectors; checked on every open
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mertsearch import __version__
from mertsearch.config import WindowSettings
from mertsearch.encoder.checkpoint import (
    Checkpoint,
    architecture,
    default_layer,
    default_window_s,
    read_preprocessing,
    resolve_checkpoint,
)
from mertsearch.encoder.registry import DEFAULT_MODEL
from mertsearch.errors import (
    CatalogMismatchError,
    CatalogNotFoundError,
    InvalidArgumentError,
    TrackNotFoundError,
)
from mertsearch.indexer.discover import discover_files
from mertsearch.indexer.pipeline import IndexProgress, IndexReport, run_index
from mertsearch.search import SearchResult, rank_tracks
from mertsearch.storage import MetadataStore, VectorIndex, check_compatible, read_manifest, write_manifest
from mertsearch.storage.manifest import FORMAT
from mertsearch.storage.store import from_blob
from mertsearch.storage.vector_index import DEFAULT_FACTORY, saved_index_file

if TYPE_CHECKING:  # torch and transformers load only when audio is embedded, so `info` starts fast
    from mertsearch.audio.decode import AudioInput
    from mertsearch.encoder.mert import MertEncoder
    from mertsearch.encoder.pooling import Embedding

DATABASE = "catalog.db"
INDEX_DIR = "index"
# While indexing, the FAISS file is rewritten at most this often (it is rebuilt after a crash anyway).
SAVE_EVERY_S = 60.0


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def encoder_manifest(checkpoint: Checkpoint, layer: int) -> dict:
    """The manifest's "encoder" section for a checkpoint and layer; validates the layer."""
    config = checkpoint.config()
    num_layers = int(config.get("num_hidden_layers", 0))
    if not 0 <= layer <= num_layers:
        raise InvalidArgumentError(f"--layer must be between 0 and {num_layers} for this model, got {layer}")
    pre = read_preprocessing(checkpoint)
    return {
        "source": checkpoint.source,
        "repo_id": checkpoint.repo_id,
        "revision": checkpoint.revision,
        "weights_sha256": checkpoint.weights_sha256(),
        "architecture": architecture(config),
        "sample_rate": pre.sample_rate,
        "do_normalize": pre.do_normalize,
        "layer": layer,
        "num_layers": num_layers,
        "dim": int(config["hidden_size"]),
    }


class Catalog:
    """Index music and search it. Open one with :meth:`open` (or :meth:`create`)."""

    def __init__(
        self, directory: Path, manifest: dict, *, checkpoint: Checkpoint | None, device: str | None, batch_size: int
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.windows = WindowSettings(**manifest["windows"])
        self.store = MetadataStore(f"sqlite:///{directory / DATABASE}")
        self._checkpoint = checkpoint
        self._device = device
        self._batch_size = batch_size
        self._encoder: MertEncoder | None = None
        self._index: VectorIndex | None = None

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        *,
        model: str | None = None,
        layer: int | None = None,
        revision: str | None = None,
        hop: float | None = None,
        create: bool = False,
        device: str | None = None,
        batch_size: int = 4,
    ) -> Catalog:
        """Open the catalog in ``directory``; with ``create=True`` make it when it does not exist.

        Settings given for an existing catalog must match the ones it was built with, or
        CatalogMismatchError names each difference.
        """
        path = Path(directory).expanduser().absolute()
        stored = read_manifest(path) if path.is_dir() else None
        checkpoint = resolve_checkpoint(model, revision=revision) if model else None
        if stored is None:
            if not create:
                raise CatalogNotFoundError(
                    f"no catalog at {path}; create one with `mertsearch index FOLDER --catalog {directory}`"
                )
            if path.exists() and any(path.iterdir()):
                raise CatalogNotFoundError(f"{path} is not empty and holds no catalog; choose a new directory")
            checkpoint = checkpoint or resolve_checkpoint(DEFAULT_MODEL, revision=revision)
            chosen_layer = default_layer(checkpoint) if layer is None else layer
            windows = _window_settings(checkpoint, hop)
            manifest = {
                "format": FORMAT,
                "created_by": f"mertsearch {__version__}",
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "encoder": encoder_manifest(checkpoint, chosen_layer),
                "windows": windows.as_dict(),
                "pooling": {
                    "window": "mean over frames, L2-normalised",
                    "track": "mean of window vectors, L2-normalised",
                },
                "index": {"factory": DEFAULT_FACTORY, "metric": "inner_product", "vectors": "tracks"},
            }
            path.mkdir(parents=True, exist_ok=True)
            write_manifest(path, manifest)
            return cls(path, manifest, checkpoint=checkpoint, device=device, batch_size=batch_size)

        wanted = {section: dict(values) for section, values in stored.items() if isinstance(values, dict)}
        if checkpoint is not None:
            wanted["encoder"] = encoder_manifest(checkpoint, stored["encoder"]["layer"] if layer is None else layer)
        elif layer is not None:
            wanted["encoder"]["layer"] = layer
        if hop is not None:
            wanted["windows"]["hop_s"] = hop
        check_compatible(stored, wanted, path)
        return cls(path, stored, checkpoint=checkpoint, device=device, batch_size=batch_size)

    @classmethod
    def create(cls, directory: str | os.PathLike, **settings) -> Catalog:
        """Open ``directory``, creating the catalog if needed (same arguments as :meth:`open`)."""
        return cls.open(directory, create=True, **settings)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # --- the model and the index, loaded when first needed -------------------------------------

    @property
    def encoder(self) -> MertEncoder:
        if self._encoder is None:
            from mertsearch.encoder.mert import MertEncoder

            spec = self.manifest["encoder"]
            checkpoint = self._checkpoint or resolve_checkpoint(spec["source"], revision=spec["revision"])
            if self._checkpoint is None and checkpoint.weights_sha256() != spec["weights_sha256"]:
                raise CatalogMismatchError(
                    f"the weights at {checkpoint.directory} are not the ones this catalog was built with "
                    f"(sha256 {spec['weights_sha256'][:12]}...); pass --model with the original weights"
                )
            self._encoder = MertEncoder(
                checkpoint, spec["layer"], device=self._device or default_device(), batch_size=self._batch_size
            )
        return self._encoder

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            index_dir = self.directory / INDEX_DIR
            version = self.store.data_version()
            dim, factory = self.manifest["encoder"]["dim"], self.manifest["index"]["factory"]
            self._index = VectorIndex.load(index_dir, version, dim, factory)
            if self._index is None:
                self._index = self.rebuild_index()
        return self._index

    def rebuild_index(self) -> VectorIndex:
        """Build the FAISS index again from the stored vectors (no model needed) and save it."""
        index = VectorIndex(self.manifest["encoder"]["dim"], self.manifest["index"]["factory"])
        for ids, vectors in self.store.track_vectors():
            index.add(ids, vectors)
        index.save(self.directory / INDEX_DIR, self.store.data_version())
        self._index = index
        return index

    # --- ingest -----------------------------------------------------------------------------

    def embed(self, source: AudioInput, *, start: float | None = None, end: float | None = None) -> Embedding:
        """Vectors of any audio, processed exactly like the catalog's tracks."""
        from mertsearch.audio.decode import decode_audio
        from mertsearch.encoder.embed import embed_samples

        samples = decode_audio(source, sample_rate=self.encoder.sample_rate, start=start, end=end)
        return embed_samples(self.encoder, samples, self.windows)

    def index_paths(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        retry_failed: bool = False,
        progress: Callable[[IndexProgress], None] | None = None,
    ) -> IndexReport:
        """Add new audio files under ``paths``, re-embed changed ones, skip unchanged ones."""
        from mertsearch.audio.decode import decode_audio
        from mertsearch.audio.tags import read_tags
        from mertsearch.encoder.embed import embed_samples

        files = discover_files(paths)
        index = self.index
        encoder = self.encoder
        index_dir = self.directory / INDEX_DIR
        last_save = time.monotonic()

        def embed_file(path: Path):
            samples = decode_audio(path, sample_rate=encoder.sample_rate)
            return embed_samples(encoder, samples, self.windows), read_tags(path)

        def on_stored(track_id: int, replaced: int | None, vector: np.ndarray) -> None:
            nonlocal last_save
            if replaced is not None:
                index.remove(np.array([replaced]))
            index.add(np.array([track_id]), vector[None, :])
            if time.monotonic() - last_save > SAVE_EVERY_S:
                index.save(index_dir, self.store.data_version())
                last_save = time.monotonic()

        def on_removed(track_id: int) -> None:
            index.remove(np.array([track_id]))

        try:
            return run_index(
                files,
                store=self.store,
                embed_file=embed_file,
                on_stored=on_stored,
                on_removed=on_removed,
                retry_failed=retry_failed,
                progress=progress,
            )
        finally:
            index.save(index_dir, self.store.data_version())

    # --- queries ----------------------------------------------------------------------------

    def search(
        self, query: AudioInput, *, k: int = 10, start: float | None = None, end: float | None = None
    ) -> list[SearchResult]:
        """Tracks most similar to an audio clip (a path, encoded bytes, or a (samples, rate) pair)."""
        _check_k(k)
        embedding = self.embed(query, start=start, end=end)
        return rank_tracks(
            self.index, self.store, vector=embedding.vector, window_vectors=embedding.window_vectors, k=k
        )

    def similar(self, track: int | str | os.PathLike, *, k: int = 10) -> list[SearchResult]:
        """Tracks most similar to one already in the catalog (by id or path); the seed is left out."""
        _check_k(k)
        track_id = self.track_id(track)
        row = self.store.tracks_by_id([track_id])[track_id]
        _times, window_vectors = self.store.windows_of([track_id])[track_id]
        return rank_tracks(
            self.index,
            self.store,
            vector=from_blob(row.vector),
            window_vectors=window_vectors,
            k=k,
            exclude={track_id},
        )

    def track_id(self, track: int | str | os.PathLike) -> int:
        """The id of a track given by id, by a numeric string, or by its path."""
        if isinstance(track, str) and track.isdigit():
            track = int(track)
        if isinstance(track, int):
            if track not in self.store.tracks_by_id([track]):
                raise TrackNotFoundError(f"no track with id {track} in {self.directory}")
            return track
        row = self.store.track_by_path(os.fsdecode(Path(track).expanduser().absolute()))
        if row is None:
            raise TrackNotFoundError(f"no track with path {track} in {self.directory}")
        return row.id

    def info(self) -> dict:
        """Counts, settings and sizes, for `mertsearch info`."""
        counts = self.store.counts()
        spec = self.manifest["encoder"]
        index_file = saved_index_file(self.directory / INDEX_DIR)
        database = self.directory / DATABASE
        return {
            "catalog": str(self.directory),
            "tracks": counts["tracks"],
            "windows": counts["windows"],
            "failed": counts["failed"],
            "audio_hours": round(counts["audio_hours"], 4),
            "model": spec["source"],
            "repo_id": spec["repo_id"],
            "revision": spec["revision"],
            "weights_sha256": spec["weights_sha256"],
            "layer": spec["layer"],
            "dim": spec["dim"],
            "sample_rate": spec["sample_rate"],
            "window_s": self.windows.window_s,
            "hop_s": self.windows.hop_s,
            "index": {
                "factory": self.manifest["index"]["factory"],
                "vectors": "tracks",
                "file": index_file.name if index_file else None,
                "bytes": index_file.stat().st_size if index_file else 0,
            },
            "database_bytes": sum(p.stat().st_size for p in database.parent.glob(DATABASE + "*") if p.is_file()),
            "created_by": self.manifest.get("created_by"),
            "created_at": self.manifest.get("created_at"),
        }

    def failures(self) -> list[dict]:
        return [{"path": f.path, "reason": f.reason} for f in self.store.failures()]


def _window_settings(checkpoint: Checkpoint, hop: float | None) -> WindowSettings:
    """Windows of the model's pre-training context, one after the other unless ``hop`` is given."""
    window = default_window_s(checkpoint)
    return WindowSettings(window_s=window, hop_s=window if hop is None else hop)


def _check_k(k: int) -> None:
    if not 1 <= k <= 10000:
        raise InvalidArgumentError(f"k must be between 1 and 10000, got {k}")


def embed(
    source: AudioInput,
    *,
    model: str = DEFAULT_MODEL,
    layer: int | None = None,
    revision: str | None = None,
    hop: float | None = None,
    start: float | None = None,
    end: float | None = None,
    device: str | None = None,
) -> Embedding:
    """Vectors of one clip without a catalog: the pooled, L2-normalised vector and the window vectors."""
    from mertsearch.audio.decode import decode_audio
    from mertsearch.encoder.embed import embed_samples
    from mertsearch.encoder.mert import MertEncoder

    checkpoint = resolve_checkpoint(model, revision=revision)
    encoder = MertEncoder(
        checkpoint, default_layer(checkpoint) if layer is None else layer, device=device or default_device()
    )
    windows = _window_settings(checkpoint, hop)
    samples = decode_audio(source, sample_rate=encoder.sample_rate, start=start, end=end)
    return embed_samples(encoder, samples, windows)
