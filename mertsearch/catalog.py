"""A catalog: a directory holding the metadata database, the FAISS index and the manifest.

catalog/
  catalog.db        SQLite: tracks, windows and their vectors, failures (the source of truth), unless
                    the manifest names another database (a PostgreSQL URL, without its password)
  index/            tracks-v<N>.faiss, derived from the stored vectors, rebuilt when stale
  manifest.json     everything that shapes the vectors; checked on every open
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.config import RaySettings, WindowSettings, check_precision
from mertsearch.encoder.checkpoint import Checkpoint, resolve_checkpoint
from mertsearch.encoder.pooling import l2_normalize, searchable_vectors
from mertsearch.encoder.registry import DEFAULT_MODEL
from mertsearch.encoder.runtime import checkpoint_of, default_batch_size, default_device, open_catalog_encoder
from mertsearch.errors import (
    CatalogMismatchError,
    CatalogNotFoundError,
    DatabaseError,
    InvalidArgumentError,
    TrackNotFoundError,
)
from mertsearch.evaluation.metrics import score_spread
from mertsearch.indexer.discover import discover_files
from mertsearch.indexer.duplicates import find_leader
from mertsearch.indexer.pipeline import IndexProgress, IndexReport, run_index
from mertsearch.search import Query, Rules, SearchResult, rank
from mertsearch.settings import (
    LayersArg,
    database_from_env,
    new_manifest,
    resolve_layers,
    wanted_manifest,
    window_settings,
)
from mertsearch.storage import MetadataStore, VectorIndex, check_compatible, read_manifest, write_manifest
from mertsearch.storage.filters import Filters
from mertsearch.storage.indexes import Indexes, SaveSchedule
from mertsearch.storage.lock import WriterLock
from mertsearch.storage.manifest import TEMP_PREFIX as MANIFEST_TEMP
from mertsearch.storage.store import StoredTrack, TrackRecord, from_blob, safe_url
from mertsearch.storage.transform import IDENTITY, VectorTransform
from mertsearch.storage.vector_index import saved_index_file
from mertsearch.storage.verify import check_indexes, check_store

if TYPE_CHECKING:  # torch and transformers load only when audio is embedded, so `info` starts fast
    from mertsearch.audio.decode import AudioInput
    from mertsearch.encoder.mert import MertEncoder
    from mertsearch.encoder.pooling import Embedding

DATABASE = "catalog.db"
INDEX_DIR = "index"
# While indexing, the FAISS files are rewritten at most this often (they are rebuilt after a crash
# anyway, and readers catch up from the database meanwhile), and in at most this share of the time.
SAVE_EVERY_S = 60.0
SAVE_SHARE = 0.1
# A decoder worker silent this long (while it is waited for) is taken to hang.
DECODE_TIMEOUT_S = 120.0
# Shard files of a distributed run, until it has ingested them all.
SHARD_DIR = "shards"


def _writes(method):
    """Run a method that changes the catalog under the writer lock, alone."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock.held(wait_s=self.wait_s):
            self._take_up_meta(persist=True)
            return method(self, *args, **kwargs)

    return locked


def _adds(method):
    """Run an ingest under the writer lock: alone with SQLite; beside other ingests with a server
    database, whose transactions keep concurrent writers apart (never beside reindex, repair...)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock.held(wait_s=self.wait_s, shared=self.store.dialect != "sqlite"):
            self._take_up_meta(persist=True)
            return method(self, *args, **kwargs)

    return locked


def default_database(directory: Path) -> str:
    return f"sqlite:///{directory / DATABASE}"


def _database_url(directory: Path, stored: dict, asked: str | None, from_env: str | None) -> str:
    """The URL to connect with: the one recorded in the manifest (SQLite in the directory if none),
    or the one asked for when it is the same database (it may carry the password)."""
    recorded = stored.get("database") or default_database(directory)
    if asked is not None:
        if safe_url(asked) != safe_url(recorded):
            raise CatalogMismatchError(
                f"catalog {directory} keeps its metadata in {safe_url(recorded)}, not {safe_url(asked)}; "
                "leave --database out to use its own, or use a new --catalog directory"
            )
        return asked
    # MERTSEARCH_DATABASE names the database of new catalogs; here it only helps when it is this
    # catalog's (with its password), never moves a catalog elsewhere.
    if from_env is not None and safe_url(from_env) == safe_url(recorded):
        return from_env
    return recorded


class Catalog:
    """Index music and search it. Open one with :meth:`open` (or :meth:`create`)."""

    def __init__(
        self,
        directory: Path,
        manifest: dict,
        *,
        checkpoint: Checkpoint | None,
        device: str | None,
        batch_size: int | None,
        precision: str | None = None,
        mmap: bool = False,
        database: str | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.windows = WindowSettings(**manifest["windows"])
        self.store = MetadataStore(database or default_database(directory))
        self._checkpoint = checkpoint
        self._device = device
        self._batch_size = batch_size
        self._precision = precision
        self._mmap = mmap
        self._lock = WriterLock(directory)
        self.wait_s = 0.0  # how long a writing operation waits for another writer
        self._encoder: MertEncoder | None = None
        self._indexes: Indexes | None = None
        self._transform: VectorTransform | None = None
        self._take_up_meta()

    def _take_up_meta(self, *, persist: bool = False) -> None:
        """Follow the database, the source of truth, where a writer's reindex changed the searched
        layers or the transform (since this catalog was opened, or in a crash between database and
        manifest): the manifest in memory, the transform, the indexes and the encoder's pooling
        follow. ``persist`` (the writer, alone in holding the lock) also mends manifest.json."""
        spec = self.manifest["encoder"]
        layers, transform = self.store.meta("layers"), self.store.meta("transform")
        changed = False
        if layers is not None and json.loads(layers) != spec["layers"]:
            spec["layers"] = json.loads(layers)
            if self._encoder is not None:  # it computes every kept layer; only its pooling changes
                self._encoder.layers = tuple(spec["layers"])
            changed = True
        if transform is not None and json.loads(transform) != self.manifest["transform"]:
            self.manifest["transform"] = json.loads(transform)
            changed = True
        if changed:
            self._transform = self._indexes = None
        if persist and read_manifest(self.directory) != self.manifest:
            write_manifest(self.directory, self.manifest)

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        *,
        model: str | None = None,
        layer: int | None = None,
        layers: LayersArg = None,
        keep_layers: bool = False,
        revision: str | None = None,
        hop: float | None = None,
        create: bool = False,
        device: str | None = None,
        batch_size: int | None = None,
        precision: str | None = None,
        mmap: bool = False,
        database: str | None = None,
    ) -> Catalog:
        """Open the catalog in ``directory``; with ``create=True`` make it when it does not exist.

        ``database`` is the SQLAlchemy URL of the metadata database of a new catalog (default: the
        MERTSEARCH_DATABASE environment variable, else SQLite in the directory), e.g.
        ``postgresql+psycopg://user@host/dbname``. The manifest records it without its password
        (give that through PGPASSWORD or ~/.pgpass, or this URL again); an existing catalog is
        reopened with its own, and a different ``database`` is CatalogMismatchError.

        ``layers`` is one hidden-state index, several (searched as the mean of their normalised
        vectors) or "all"; None means the model's default. ``keep_layers`` stores every layer's
        vectors too, so :meth:`reindex` can switch layers later without the model. Settings given
        for an existing catalog must match the ones it was built with, or CatalogMismatchError
        names each difference. ``mmap`` maps saved indexes read-only instead of reading them,
        so a large catalog opens at once for searching (it cannot index then).

        ``device`` runs the model on "cpu" or "cuda" (default: cuda when there is one);
        ``batch_size`` is windows per model call (default: 32 on a GPU, 1 on a CPU);
        ``precision`` is "auto", "fp32", "bf16" or "fp16" (see MertEncoder); None: the
        MERTSEARCH_PRECISION environment variable, else "auto".
        """
        layers = _one_of(layer, layers)
        precision = check_precision(precision)
        path = Path(directory).expanduser().absolute()
        stored = read_manifest(path) if path.is_dir() else None
        checkpoint = resolve_checkpoint(model, revision=revision) if model else None
        from_env = database_from_env()
        manifest = None
        if stored is None:
            if not create:
                raise CatalogNotFoundError(
                    f"no catalog at {path}; create one with `mertsearch index FOLDER --catalog {directory}`"
                )
            if path.exists() and any(not entry.name.startswith(MANIFEST_TEMP) for entry in path.iterdir()):
                raise CatalogNotFoundError(f"{path} is not empty and holds no catalog; choose a new directory")
            checkpoint = checkpoint or resolve_checkpoint(DEFAULT_MODEL, revision=revision)
            manifest = new_manifest(checkpoint, layers, keep_all=keep_layers, hop=hop)
            url = database or from_env
            if url is not None and safe_url(url) != safe_url(default_database(path)):
                manifest["database"] = safe_url(url)
            _check_new_database(url, manifest)
            path.mkdir(parents=True, exist_ok=True)
            try:
                write_manifest(path, manifest, new=True)
                stored = manifest
            except FileExistsError:  # another process created it meanwhile: open theirs, as a reopen
                stored = read_manifest(path)
        if stored is not manifest:
            check_compatible(stored, wanted_manifest(stored, checkpoint, layers, keep_all=keep_layers, hop=hop), path)
            url = _database_url(path, stored, database, from_env)
        return cls(
            path,
            stored,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
            precision=precision,
            mmap=mmap,
            database=url,
        )

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
            self._encoder = open_catalog_encoder(
                self.manifest["encoder"],
                checkpoint=self._checkpoint,
                device=self._device,
                batch_size=self._batch_size,
                precision=self._precision,
            )
        return self._encoder

    @property
    def indexes(self) -> Indexes:
        """The track and window FAISS indexes, loaded (or rebuilt when stale) on first use."""
        if self._indexes is None:
            self._indexes = Indexes(
                self.directory / INDEX_DIR,
                self.store,
                dim=self.manifest["encoder"]["dim"],
                factory=self.manifest["index"]["factory"],
                transform=lambda vectors: self.transform(vectors),
                mmap=self._mmap,
                writing=lambda: self._lock.held_here,
            )
        return self._indexes

    @property
    def index(self) -> VectorIndex:
        """The index of track vectors."""
        return self.indexes.tracks

    @property
    def transform(self) -> VectorTransform:
        """The centering/whitening fitted on this catalog (identity when there is none)."""
        if self._transform is None:
            spec = self.manifest["transform"]
            self._transform = (
                IDENTITY if spec["kind"] == "none" else VectorTransform.load(self.directory / spec["file"])
            )
        return self._transform

    @_writes
    def rebuild_index(self, factory: str | None = None, *, shard_size: int | None = None) -> None:
        """Build the FAISS indexes again from the stored vectors (no model needed) and save them.

        ``factory`` sets the index kind from now on: "auto" (by size) or a FAISS factory string.
        Inverted files ("IVF...") too big for one shard are built in shards, merged on disk;
        ``shard_size`` forces that, with shards of that many vectors.
        """
        if shard_size is not None and shard_size < 1:
            raise InvalidArgumentError(f"shard_size must be at least 1, got {shard_size}")
        self.indexes.rebuild(factory, shard_size=shard_size, announce=True)
        if factory is not None and factory != self.manifest["index"]["factory"]:
            self.manifest["index"]["factory"] = factory
            write_manifest(self.directory, self.manifest)

    # --- ingest -----------------------------------------------------------------------------

    def embed(self, source: AudioInput, *, start: float | None = None, end: float | None = None) -> Embedding:
        """Vectors of any audio, processed exactly like the catalog's tracks."""
        from mertsearch.audio.decode import stream_audio
        from mertsearch.encoder.embed import embed_chunks

        self._take_up_meta()
        chunks = stream_audio(source, sample_rate=self.encoder.sample_rate, start=start, end=end)
        return embed_chunks(self.encoder, chunks, self.windows)

    @_adds
    def index_paths(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        retry_failed: bool = False,
        progress: Callable[[IndexProgress], None] | None = None,
        decoders: int | None = None,
        decode_timeout_s: float = DECODE_TIMEOUT_S,
        ray: RaySettings | None = None,
        prune_empty: bool = False,
    ) -> IndexReport:
        """Add new audio files under ``paths``, re-embed changed ones, skip unchanged ones, and forget
        the tracks of files gone from the folders among ``paths``.

        A folder with tracks in the catalog but not a single audio file now is taken for a disk
        that is not mounted: nothing under it is removed (``report.empty_folders`` names it)
        unless ``prune_empty`` is set.

        ``decoders`` worker processes decode files while the model runs (default: one per core
        but one; 0 decodes in this process). A worker silent for ``decode_timeout_s`` seconds
        is stopped and its file recorded as failed. With ``ray`` the files are decoded and
        embedded on a Ray cluster instead (see mertsearch.indexer.distributed) and stored here.
        """
        from mertsearch.indexer.batching import embed_jobs
        from mertsearch.indexer.reader import read_track
        from mertsearch.indexer.workers import Workers, default_workers

        files = discover_files(paths)
        indexes = self.indexes
        indexes.load()
        saves = SaveSchedule(SAVE_EVERY_S, SAVE_SHARE)
        read = functools.partial(read_track, sample_rate=self.manifest["encoder"]["sample_rate"], windows=self.windows)

        def on_stored(stored: StoredTrack, record: TrackRecord) -> None:
            indexes.stored(stored, record.vector, record.window_vectors)
            if saves.due():
                saves.save(indexes)

        def ingest(embed) -> IndexReport:
            try:
                report = run_index(
                    files,
                    store=self.store,
                    embed=embed,
                    on_stored=on_stored,
                    on_removed=indexes.removed,
                    leader_of=lambda record, own_id: find_leader(
                        indexes.tracks,
                        self.store,
                        exclude=own_id,
                        vector=self.transform(record.vector[None, :])[0],
                        window_vectors=record.window_vectors,
                        duration=record.duration,
                    ),
                    retry_failed=retry_failed,
                    progress=progress,
                )
                report.removed, report.empty_folders = self._remove_vanished(paths, files, prune_empty=prune_empty)
            finally:
                saves.save(indexes)
            report.saving_s = round(saves.total, 3)
            return report

        if ray is not None:
            return self._index_on_ray(ingest, ray)
        # The workers start before the model loads, so they share none of its memory or threads.
        count = default_workers() if decoders is None else decoders
        with Workers(read, count=count, timeout_s=decode_timeout_s) as workers:
            encoder = self.encoder
            report = ingest(lambda jobs: embed_jobs(jobs, encoder=encoder, workers=workers))
            report.device, report.precision, report.decoders = str(encoder.device), encoder.precision, count
            return report

    def _index_on_ray(self, ingest, settings: RaySettings) -> IndexReport:
        """Decode and embed on Ray; the model is never loaded here (the actors check its weights)."""
        from mertsearch.indexer.distributed import RayRun, embed_on_ray

        spec = self.manifest["encoder"]
        checkpoint = self._checkpoint or checkpoint_of(spec)
        model = {"directory": str(checkpoint.directory), "batch_size": self._batch_size, "precision": self._precision}
        run = RayRun()
        report = ingest(
            lambda jobs: embed_on_ray(
                jobs,
                spec=spec,
                model=model,
                windows=self.windows,
                shards=self.directory / SHARD_DIR,
                settings=settings,
                run=run,
            )
        )
        report.device = f"ray ({run.actors} actor(s), {run.device})" if run.device else "ray"
        report.precision, report.decoders = run.precision, 0
        report.executor, report.from_shards = "ray", run.from_shards
        return report

    def _remove_vanished(
        self, paths: Iterable[str | os.PathLike], files: list[Path], *, prune_empty: bool
    ) -> tuple[int, list[str]]:
        """Forget tracks under the indexed folders whose files are gone: (how many, the folders
        with tracks in the catalog but no audio file at all now, whose tracks are kept unless
        ``prune_empty``)."""
        found = {os.fsdecode(f) for f in files}
        roots = {
            os.fsdecode(folder).rstrip(os.sep) + os.sep: os.fsdecode(folder)
            for folder in (Path(p).expanduser().absolute() for p in paths)
            if folder.is_dir()
        }
        # Folders without a single audio file now, that held tracks: a disk not mounted, most likely.
        empty = [
            folder
            for prefix, folder in roots.items()
            if not any(f.startswith(prefix) for f in found) and self.store.paths_under([prefix])
        ]
        prefixes = [prefix for prefix, folder in roots.items() if prune_empty or folder not in empty]
        if not prefixes:
            return 0, empty
        gone = [track_id for track_id, path in self.store.paths_under(prefixes) if path not in found and _gone(path)]
        return len(self.remove(gone)), empty

    @_writes
    def remove(self, tracks: Sequence[int | str | os.PathLike]) -> list[int]:
        """Take tracks (by id or path) out of the catalog; returns their ids. Files are not touched."""
        ids = list(dict.fromkeys(self.track_id(track) for track in tracks))
        indexes = self.indexes
        indexes.load()
        for track_id in ids:
            indexes.removed(track_id, self.store.delete_track(track_id))
        indexes.save()
        return ids

    def duplicates(self) -> list[dict]:
        """Groups of files that hold the same recording: the leading track and the others."""
        return [
            {
                "track_id": lead,
                "path": members[0].path,
                "alternates": [{"track_id": m.id, "path": m.path} for m in members[1:]],
            }
            for lead, members in sorted(self.store.duplicate_groups().items())
        ]

    # --- queries ----------------------------------------------------------------------------

    def search(
        self,
        query: AudioInput,
        *,
        k: int = 10,
        start: float | None = None,
        end: float | None = None,
        mode: str = "segments",
        filters: Filters | None = None,
        per_artist: int | None = None,
        per_album: int | None = None,
        min_score: float | None = None,
    ) -> list[SearchResult]:
        """Tracks most similar to an audio clip (a path, encoded bytes, or a (samples, rate) pair).

        ``mode`` "segments" (default) matches the clip's windows against every stored window, so
        a clip that is part of a long track finds it; "tracks" compares whole-track vectors.
        ``filters`` limit the tracks searched; ``per_artist``/``per_album`` cap results per
        artist/album; ``min_score`` drops weaker results.
        """
        _check_k(k)
        embedding = self.embed(query, start=start, end=end)
        return self.search_embedding(
            embedding, k=k, mode=mode, filters=filters, per_artist=per_artist, per_album=per_album, min_score=min_score
        )

    def search_embedding(
        self,
        embedding: Embedding,
        *,
        k: int = 10,
        mode: str = "segments",
        filters: Filters | None = None,
        per_artist: int | None = None,
        per_album: int | None = None,
        min_score: float | None = None,
    ) -> list[SearchResult]:
        """:meth:`search` with a clip already embedded (by :meth:`embed`, or the same model elsewhere).

        The embedding's ``vector`` and ``window_vectors`` must be of this catalog's searched layers,
        untransformed; the catalog's transform is applied here, as for any query.
        """
        _check_k(k)
        self._take_up_meta()
        times = np.stack([embedding.window_starts, embedding.window_ends], axis=1)
        return self._rank(
            embedding.vector,
            embedding.window_vectors,
            times,
            k=k,
            mode=mode,
            rules=self._rules(filters, per_artist, per_album, min_score),
        )

    def similar(
        self,
        tracks: int | str | os.PathLike | Sequence[int | str | os.PathLike],
        *,
        k: int = 10,
        mode: str = "tracks",
        filters: Filters | None = None,
        per_artist: int | None = None,
        per_album: int | None = None,
        exclude_seed_artist: bool = False,
        min_score: float | None = None,
    ) -> list[SearchResult]:
        """Tracks most similar to one or more catalog tracks (by id or path); the seeds are left out.

        Several seeds query with the normalised mean of their vectors.
        """
        _check_k(k)
        self._take_up_meta()
        seeds = [tracks] if isinstance(tracks, (int, str, os.PathLike)) else list(tracks)
        ids = list(dict.fromkeys(self.track_id(seed) for seed in seeds))
        rows = self.store.tracks_by_id(ids)
        windows = self.store.windows_of(ids)
        vector = l2_normalize(np.mean([from_blob(rows[i].vector) for i in ids], axis=0))
        window_vectors = np.concatenate([windows[i][1] for i in ids])
        times = np.concatenate([windows[i][0] for i in ids])
        artists = [rows[i].artist for i in ids if rows[i].artist] if exclude_seed_artist else []
        # Other files of the seeds' recordings are left out with them.
        seeds = {rows[i].duplicate_of or i for i in ids}
        rules = self._rules(filters, per_artist, per_album, min_score, exclude=seeds, exclude_artists=artists)
        return self._rank(vector, window_vectors, times, k=k, mode=mode, rules=rules)

    def _rules(self, filters, per_artist, per_album, min_score, *, exclude=(), exclude_artists=()) -> Rules:
        for name, cap in (("per_artist", per_artist), ("per_album", per_album)):
            if cap is not None and cap < 1:
                raise InvalidArgumentError(f"{name} must be at least 1, got {cap}")
        return Rules(
            allowed=self.store.track_ids_where(filters.condition()) if filters else None,
            exclude=exclude,
            exclude_artists=exclude_artists,
            per_artist=per_artist,
            per_album=per_album,
            min_score=min_score,
        )

    def _rank(
        self, vector: np.ndarray, window_vectors: np.ndarray, times: np.ndarray, *, k: int, mode: str, rules: Rules
    ) -> list[SearchResult]:
        query = Query(self.transform(vector[None, :])[0], self.transform(window_vectors), times)
        return rank(
            mode=mode,
            tracks_index=self.indexes.tracks,
            windows_index=self.indexes.windows,
            store=self.store,
            query=query,
            k=k,
            rules=rules,
            transform=self.transform,
            tolerance=self.windows.hop_s / 2,
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
        self._take_up_meta()
        counts = self.store.counts()
        spec = self.manifest["encoder"]
        return {
            "catalog": str(self.directory),
            "database": safe_url(self.store.engine.url),
            "tracks": counts["tracks"],
            "windows": counts["windows"],
            "failed": counts["failed"],
            "audio_hours": round(counts["audio_hours"], 4),
            "model": spec["source"],
            "repo_id": spec["repo_id"],
            "revision": spec["revision"],
            "weights_sha256": spec["weights_sha256"],
            "layer": spec["layers"][0] if len(spec["layers"]) == 1 else None,
            "layers": spec["layers"],
            "kept_layers": spec["kept_layers"],
            "transform": self.manifest["transform"]["kind"],
            "dim": spec["dim"],
            "sample_rate": spec["sample_rate"],
            "window_s": self.windows.window_s,
            "hop_s": self.windows.hop_s,
            "index": {
                "factory": self.manifest["index"]["factory"],
                **{name: self._index_info(name) for name in ("tracks", "windows")},
            },
            "database_bytes": self._database_bytes(),
            "layer_vectors_bytes": counts["layer_vector_bytes"],
            "created_by": self.manifest.get("created_by"),
            "created_at": self.manifest.get("created_at"),
        }

    def _database_bytes(self) -> int:
        if self.store.dialect == "sqlite":
            database = Path(self.store.engine.url.database or "")
            return sum(p.stat().st_size for p in database.parent.glob(database.name + "*") if p.is_file())
        return self.store.size_bytes()

    def _index_info(self, name: str) -> dict:
        index = getattr(self.indexes, name)
        saved = saved_index_file(self.directory / INDEX_DIR, name)
        lists = index.lists_file if index.lists_file is not None and index.lists_file.is_file() else None
        return {
            "kind": index.factory,
            "vectors": len(index),
            "file": saved.name if saved else None,
            # An index merged on disk keeps its inverted lists in a file of their own.
            "lists_file": lists.name if lists is not None else None,
            "bytes": (saved.stat().st_size if saved else 0) + (lists.stat().st_size if lists is not None else 0),
        }

    @_writes
    def reindex(self, *, layer: int | None = None, layers: LayersArg = None, transform: str | None = None) -> dict:
        """Switch the searched layers and/or the centering, from stored vectors, without the model.

        Other layers need a catalog that keeps every layer (``keep_layers``). ``transform`` is
        "none", "center" or "whiten", fitted on the catalog's track vectors; a transform in place
        is fitted again when the layers change. Returns what changed, with the spread of the
        scores between random pairs of tracks before and after.
        """
        started = time.monotonic()
        layers = _one_of(layer, layers)
        spec = self.manifest["encoder"]
        new_layers = spec["layers"] if layers is None else resolve_layers(layers, spec["num_layers"])
        before = score_spread(self.transform(self.store.all_track_vectors(spec["dim"])[1]))
        rewritten = 0
        if new_layers != spec["layers"]:
            kept = spec["kept_layers"]
            if not kept:
                raise InvalidArgumentError(
                    f"this catalog stores only the vectors of layers {spec['layers']}; to switch layers without "
                    "the model, index into a new catalog with --keep-layers all (or re-index with --layers)"
                )
            positions = [kept.index(layer) for layer in new_layers]
            rewritten = self.store.rewrite_searchable(
                spec["dim"], lambda windows: searchable_vectors(windows, positions), {"layers": json.dumps(new_layers)}
            )
            spec["layers"] = new_layers
            if self._encoder is not None:
                self._encoder.layers = tuple(new_layers)
        kind = self.manifest["transform"]["kind"] if transform is None else transform
        vectors = self.store.all_track_vectors(spec["dim"])[1]
        fitted = VectorTransform.fit(kind, vectors)
        spec_transform = {
            "kind": kind,
            "file": None if kind == "none" else fitted.save(self.directory),
            "fitted_on_tracks": 0 if kind == "none" else len(vectors),
        }
        previous = self.manifest["transform"]["file"]
        self.store.update_meta({"transform": json.dumps(spec_transform)}, searchable_changed=True)
        self.manifest["transform"] = spec_transform
        write_manifest(self.directory, self.manifest)
        # The previous file stays one generation: a reader that has just read its name may be loading it.
        for old in self.directory.glob("transform-*.npz"):
            if old.name not in (spec_transform["file"], previous):
                old.unlink(missing_ok=True)
        self._transform = fitted
        self.rebuild_index()
        return {
            "layers": new_layers,
            "transform": kind,
            "tracks": len(vectors),
            "tracks_rewritten": rewritten,
            "scores_before": before,
            "scores_after": score_spread(fitted(vectors)),
            "seconds": round(time.monotonic() - started, 3),
        }

    def tune_layers(
        self,
        labels: dict[str, str] | None = None,
        *,
        exclude_same_artist: bool = False,
        exclude_same_album: bool = False,
        k: int = 10,
    ) -> dict:
        """Label retrieval (precision@k, mAP, nDCG@k) for every stored layer, raw and centered; the best layer.

        ``labels`` maps track paths (or "#<id>") to labels; without it a track's label is the
        name of its folder. Runs on stored vectors only: no model, seconds for thousands of tracks.
        """
        from mertsearch.evaluation.evaluate import tune_layers

        return tune_layers(
            self, labels, exclude_same_artist=exclude_same_artist, exclude_same_album=exclude_same_album, k=k
        )

    def evaluate(
        self,
        *,
        excerpts: int = 50,
        seconds: float = 10.0,
        seed: int = 0,
        k: int = 10,
        labels: dict[str, str] | None = None,
        exclude_same_artist: bool = False,
        exclude_same_album: bool = False,
        baseline: bool = True,
    ) -> dict:
        """How good the search is on this catalog (see mertsearch.evaluation); seeded.

        Excerpt identification, clean and degraded; label retrieval for every stored layer (labels
        from ``labels`` or folder names, when two tracks share one); the spread of scores between
        random pairs of tracks against true pairs (a clean excerpt's pooled vector and its source
        track's), both raw and centered, and the true matches' scores as searched. With
        ``baseline`` the same files are also indexed, in a temporary catalog, with the spectral
        baseline, which answers the same excerpts: a reference row (it decodes every file again).

        A catalog that keeps every layer also gets excerpt identification for each kept layer
        (``identification["layers"]``): the model runs once per degraded excerpt, as for one layer,
        and a scratch copy of the catalog (its database: about 43 MB per hour of audio for
        MERT-v1-95M) is switched to each layer from stored vectors and searched. Per layer that
        adds a reindex of the copy (under a second for a few hours of audio) and one search per
        degraded excerpt; see mertsearch.evaluation.excerpts.identify.
        """
        from mertsearch.encoder.registry import SPECTRAL
        from mertsearch.evaluation.evaluate import evaluate

        _check_k(k)
        spec = self.manifest["encoder"]
        with contextlib.ExitStack() as stack:

            def spectral_baseline() -> Catalog:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mertsearch-baseline-")))
                # A throwaway catalog: SQLite in its folder, whatever MERTSEARCH_DATABASE says.
                reference = stack.enter_context(
                    Catalog.create(folder, model=SPECTRAL, hop=self.windows.hop_s, database=default_database(folder))
                )
                reference.index_paths([path for _, path, _ in self.store.durations()])
                return reference

            def layer_sweep() -> Catalog:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mertsearch-layers-")))
                return stack.enter_context(self._scratch_copy(folder))

            return evaluate(
                self,
                excerpts=excerpts,
                seconds=seconds,
                seed=seed,
                k=k,
                labels=labels,
                exclude_same_artist=exclude_same_artist,
                exclude_same_album=exclude_same_album,
                baseline=spectral_baseline if baseline and spec["architecture"] != SPECTRAL else None,
                sweep=layer_sweep if len(spec["kept_layers"]) > 1 else None,
            )

    def _scratch_copy(self, folder: Path) -> Catalog:
        """A copy of this catalog's database and settings in ``folder`` (empty), to change freely.

        The copy is always SQLite in ``folder``: a SQLite catalog is copied with SQLite's backup
        (consistent while others read or write), another database table by table. The FAISS
        indexes are rebuilt from the stored vectors when the copy first needs them.
        """
        import shutil
        import sqlite3

        if self.store.engine.dialect.name == "sqlite":
            source = sqlite3.connect(self.store.engine.url.database)  # wherever the manifest put it
            target = sqlite3.connect(folder / DATABASE)
            try:
                with target:
                    source.backup(target)
            finally:
                source.close()
                target.close()
        else:
            copy = MetadataStore(default_database(folder))
            try:
                self.store.copy_to(copy)
            finally:
                copy.close()
        write_manifest(folder, {key: value for key, value in self.manifest.items() if key != "database"})
        if self.manifest["transform"]["kind"] != "none":
            shutil.copy2(self.directory / self.manifest["transform"]["file"], folder)
        return Catalog.open(folder)

    def verify(self) -> list[str]:
        """Problems found between the manifest, the database, the indexes and the stored vectors."""
        problems = []
        spec = self.manifest["encoder"]
        for key, value in (("layers", spec["layers"]), ("transform", self.manifest["transform"])):
            stored = self.store.meta(key)
            if stored is not None and json.loads(stored) != value:
                problems.append(f"the manifest's {key} ({value}) differ from the database's ({stored})")
        kind = self.manifest["transform"]
        if self._transform_missing():
            problems.append(f"the transform file {kind['file']} is missing (reindex --transform {kind['kind']})")
        problems += check_store(self.store, spec["dim"])
        if not self._transform_missing():  # the index checks compare through the transform
            problems += check_indexes(self.indexes, self.transform)
        return problems

    def _transform_missing(self) -> bool:
        spec = self.manifest["transform"]
        return spec["kind"] != "none" and not (self.directory / str(spec["file"])).is_file()

    @_writes
    def repair(self) -> list[str]:
        """Fix what can be fixed from the stored data; returns what was done."""
        done = []
        orphans, led_again, empty = self.store.repair_rows()
        if orphans:
            done.append(f"removed {orphans} windows that belonged to no track")
        if led_again:
            done.append(f"made {led_again} duplicate-group leaders lead again")
        if empty:
            self.remove(empty)
            done.append(f"removed {len(empty)} tracks that had no windows (index their files again)")
        if self._transform_missing():
            self.reindex(transform=self.manifest["transform"]["kind"])
            done.append("fitted the transform again")
        self.rebuild_index()
        done.append("rebuilt both indexes from the stored vectors")
        return done

    def track(self, track: int | str | os.PathLike) -> dict:
        """Everything known about one track: tags, duration, and other files of its recording."""
        track_id = self.track_id(track)
        row = self.store.tracks_by_id([track_id])[track_id]
        group = self.store.duplicate_groups([row.duplicate_of or row.id]).get(row.duplicate_of or row.id, [])
        return {**track_summary(row), "alternates": [m.path for m in group if m.id != row.id]}

    def find_tracks(self, text: str = "", *, limit: int = 50, offset: int = 0) -> dict:
        """Tracks whose title, artist, album or path contains ``text``: {"total", "tracks"}."""
        total, rows = self.store.find_tracks(text, limit=limit, offset=offset)
        return {"total": total, "tracks": [track_summary(row) for row in rows]}

    def failures(self) -> list[dict]:
        return [{"path": f.path, "reason": f.reason} for f in self.store.failures()]


def _check_new_database(url: str | None, manifest: dict) -> None:
    """A new catalog's database must be reachable and hold no other catalog's tracks (whose vectors
    the new settings might not match); checked before the directory is made."""
    if url is None:
        return
    store = MetadataStore(url)
    try:
        counts = store.counts()
        if counts["tracks"] or counts["failed"]:
            raise DatabaseError(
                f"the database {safe_url(url)} already holds a catalog's tracks; "
                "give each catalog a database of its own"
            )
    finally:
        store.close()


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


def _gone(path: str) -> bool:
    """Whether the file is surely gone: a file that cannot be looked at (permissions, an I/O
    error of a failing disk or share) is not taken for deleted."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _one_of(layer: int | None, layers: LayersArg) -> LayersArg:
    if layer is not None and layers is not None:
        raise InvalidArgumentError("give --layer or --layers, not both")
    return layer if layer is not None else layers


def _check_k(k: int) -> None:
    if not 1 <= k <= 10000:
        raise InvalidArgumentError(f"k must be between 1 and 10000, got {k}")


def embed(
    source: AudioInput,
    *,
    model: str = DEFAULT_MODEL,
    layer: int | None = None,
    layers: LayersArg = None,
    revision: str | None = None,
    hop: float | None = None,
    start: float | None = None,
    end: float | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> Embedding:
    """Vectors of one clip without a catalog: the pooled, L2-normalised vector and the window vectors."""
    from mertsearch.audio.decode import stream_audio
    from mertsearch.encoder.checkpoint import default_layer
    from mertsearch.encoder.embed import embed_chunks
    from mertsearch.encoder.mert import open_encoder

    layers = _one_of(layer, layers)
    checkpoint = resolve_checkpoint(model, revision=revision)
    chosen = resolve_layers(default_layer(checkpoint) if layers is None else layers, checkpoint.num_layers())
    device = device or default_device()
    encoder = open_encoder(
        checkpoint, chosen, device=device, batch_size=default_batch_size(device), precision=precision
    )
    windows = window_settings(checkpoint, hop)
    chunks = stream_audio(source, sample_rate=encoder.sample_rate, start=start, end=end)
    return embed_chunks(encoder, chunks, windows)
