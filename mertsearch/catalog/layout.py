"""Where a catalog keeps what, and finding (or making) a catalog's manifest and database."""

from __future__ import annotations

from pathlib import Path

from mertsearch.config import Manifest
from mertsearch.encoder.checkpoint import Checkpoint, resolve_checkpoint
from mertsearch.encoder.registry import DEFAULT_MODEL
from mertsearch.errors import CatalogMismatchError, CatalogNotFoundError, DatabaseError, InvalidArgumentError
from mertsearch.settings import LayersArg, database_from_env, new_manifest, wanted_manifest
from mertsearch.storage import MetadataStore, check_compatible, read_manifest, write_manifest
from mertsearch.storage.manifest import TEMP_PREFIX as MANIFEST_TEMP
from mertsearch.storage.store import safe_url
from mertsearch.storage.vector_store import check_vector_store, collections_prefix

DATABASE = "catalog.db"
INDEX_DIR = "index"
# Shard files of a distributed run, until it has ingested them all.
SHARD_DIR = "shards"


def default_database(directory: Path) -> str:
    return f"sqlite:///{directory / DATABASE}"


def find_or_make(
    path: Path,
    *,
    create: bool,
    shown: str,
    checkpoint: Checkpoint | None,
    layers: LayersArg,
    keep_layers: bool,
    hop: float | None,
    sample: float | None,
    revision: str | None,
    database: str | None,
    vector_store: str | None = None,
) -> tuple[Manifest, Checkpoint | None, str]:
    """The manifest of the catalog at ``path`` (made there when ``create`` and there is none), the
    checkpoint to use, and the URL of its database. Settings asked for an existing catalog must
    match the manifest (CatalogMismatchError names each difference)."""
    vector_store = check_vector_store(vector_store) if vector_store is not None else None
    stored = read_manifest(path) if path.is_dir() else None
    from_env = database_from_env()
    manifest = None
    if stored is None:
        if not create:
            raise CatalogNotFoundError(
                f"no catalog at {path}; create one with `mertsearch index FOLDER --catalog {shown}`"
            )
        if path.exists() and any(not entry.name.startswith(MANIFEST_TEMP) for entry in path.iterdir()):
            raise CatalogNotFoundError(f"{path} is not empty and holds no catalog; choose a new directory")
        checkpoint = checkpoint or resolve_checkpoint(DEFAULT_MODEL, revision=revision)
        manifest = new_manifest(checkpoint, layers, keep_all=keep_layers, hop=hop, sample=sample)
        if vector_store is not None:
            manifest.index.vector_store = vector_store
            manifest.index.collections = collections_prefix()
        url = database or from_env
        if url is not None and safe_url(url) != safe_url(default_database(path)):
            manifest.database = safe_url(url)
        check_new_database(url)
        path.mkdir(parents=True, exist_ok=True)
        try:
            write_manifest(path, manifest, new=True)
            stored = manifest
        except FileExistsError:  # another process created it meanwhile: open theirs, as a reopen
            stored = read_manifest(path)
    if stored is not manifest:
        wanted = wanted_manifest(stored, checkpoint, layers, keep_all=keep_layers, hop=hop, sample=sample)
        check_compatible(stored, wanted, path)
        if vector_store is not None and vector_store != stored.index.vector_store:
            raise CatalogMismatchError(
                f"the catalog at {path} keeps its vectors in {stored.index.vector_store or 'FAISS files'}, "
                f"not {vector_store}"
            )
        url = database_url(path, stored, database, from_env)
    return stored, checkpoint, url


def database_url(directory: Path, stored: Manifest, asked: str | None, from_env: str | None) -> str:
    """The URL to connect with: the one recorded in the manifest (SQLite in the directory if none),
    or the one asked for when it is the same database (it may carry the password)."""
    recorded = stored.database or default_database(directory)
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


def check_new_database(url: str | None) -> None:
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


def one_of(layer: int | None, layers: LayersArg) -> LayersArg:
    if layer is not None and layers is not None:
        raise InvalidArgumentError("give --layer or --layers, not both")
    return layer if layer is not None else layers
