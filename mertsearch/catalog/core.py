"""An opened catalog's parts: its directory, manifest and database, the writer lock, and the model,
FAISS indexes and transform, each loaded when first needed."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from mertsearch.catalog.layout import INDEX_DIR, default_database
from mertsearch.config import Manifest, TransformSpec
from mertsearch.encoder.checkpoint import Checkpoint
from mertsearch.encoder.runtime import open_catalog_encoder
from mertsearch.search.calibration import META_KEY as CALIBRATION
from mertsearch.search.calibration import Calibration
from mertsearch.storage import MetadataStore, VectorIndex, read_manifest, write_manifest
from mertsearch.storage.indexes import Indexes
from mertsearch.storage.lock import WriterLock
from mertsearch.storage.text_vectors import TextIndex
from mertsearch.storage.transform import IDENTITY, VectorTransform
from mertsearch.storage.vector_store import VectorStores

if TYPE_CHECKING:  # torch and transformers load only when audio is embedded, so `info` starts fast
    from mertsearch.encoder.mert import MertEncoder


def writes(method):
    """Run a method that changes the catalog under the writer lock, alone."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        return self._locked(method, args, kwargs, shared=False)

    return locked


def adds(method):
    """Run an ingest under the writer lock: alone with SQLite; beside other ingests with a server
    database, whose transactions keep concurrent writers apart (never beside reindex, repair...)."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        return self._locked(method, args, kwargs, shared=self.store.dialect != "sqlite")

    return locked


class Core:
    """What every operation on a catalog works with; :class:`mertsearch.catalog.Catalog` is one."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
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
        self.windows = manifest.windows
        self.store = MetadataStore(database or default_database(directory))
        self.checkpoint = checkpoint
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self._mmap = mmap
        self._lock = WriterLock(directory)
        self.wait_s = 0.0  # how long a writing operation waits for another writer
        self._encoder: MertEncoder | None = None
        self._indexes: VectorStores | None = None
        self._transform: VectorTransform | None = None
        self._calibration: tuple[str | None, Calibration | None] = (None, None)  # (as stored, parsed)
        self._text_model = None  # CLaMP 3 (mertsearch.encoder.clamp3.Clamp3), loaded when first needed
        self._text_index: TextIndex | None = None
        self.take_up_meta()

    def take_up_meta(self, *, persist: bool = False) -> None:
        """Follow the database, the source of truth, where a writer's reindex changed the searched
        layers or the transform (since this catalog was opened, or in a crash between database and
        manifest): the manifest in memory, the transform, the indexes and the encoder's pooling
        follow, and the similarity calibration. ``persist`` (the writer, alone in holding the lock)
        also mends manifest.json."""
        spec = self.manifest.encoder
        layers, transform = self.store.meta("layers"), self.store.meta("transform")
        calibration = self.store.meta(CALIBRATION)
        if calibration != self._calibration[0]:
            self._calibration = (calibration, Calibration.from_json(calibration))
        changed = False
        if layers is not None and json.loads(layers) != spec.layers:
            self.switch_layers(json.loads(layers))
            changed = True
        if transform is not None and TransformSpec(**json.loads(transform)) != self.manifest.transform:
            self.manifest.transform = TransformSpec(**json.loads(transform))
            changed = True
        if changed:
            self._transform = self._indexes = None
        if persist:
            self.save_manifest()

    def switch_layers(self, layers: list[int]) -> None:
        """Search other layers: the model computes every kept layer; only its pooling changes."""
        self.manifest.encoder.layers = layers
        if self._encoder is not None:
            self._encoder.layers = tuple(layers)

    def save_manifest(self) -> None:
        """Write manifest.json where it differs from the manifest in memory (the writer only)."""
        if read_manifest(self.directory) != self.manifest:
            write_manifest(self.directory, self.manifest)

    def close(self) -> None:
        self.store.close()

    def _locked(self, method, args, kwargs, *, shared: bool):
        """``method`` under the writer lock; the vector store hears when the outermost such call
        ends, and whether it ended without an error (see storage/milvus.py)."""
        outermost = not self._lock.held_here
        with self._lock.held(wait_s=self.wait_s, shared=shared):
            self.take_up_meta(persist=True)
            ok = False
            try:
                result = method(self, *args, **kwargs)
                ok = True
                return result
            finally:
                if outermost and self._indexes is not None:
                    self._indexes.finished(ok)

    @property
    def encoder(self) -> MertEncoder:
        if self._encoder is None:
            self._encoder = open_catalog_encoder(
                self.manifest.encoder,
                checkpoint=self.checkpoint,
                device=self.device,
                batch_size=self.batch_size,
                precision=self.precision,
            )
        return self._encoder

    @property
    def indexes(self) -> VectorStores:
        """The track and window vectors: FAISS indexes loaded (or rebuilt when stale) on first
        use, or the catalog's Milvus collections (see storage/vector_store.py)."""
        if self._indexes is None and self.manifest.index.vector_store is not None:
            from mertsearch.storage.milvus import MilvusStores

            self._indexes = MilvusStores(
                self.manifest.index.vector_store,
                self.manifest.index.collections or "mertsearch",
                self.store,
                dim=self.manifest.encoder.dim,
                transform=lambda vectors: self.transform(vectors),
                writing=lambda: self._lock.held_here,
                alone=lambda: self._lock.held_alone,
            )
        if self._indexes is None:
            self._indexes = Indexes(
                self.directory / INDEX_DIR,
                self.store,
                dim=self.manifest.encoder.dim,
                factory=self.manifest.index.factory,
                transform=lambda vectors: self.transform(vectors),
                mmap=self._mmap,
                writing=lambda: self._lock.held_here,
            )
        return self._indexes

    @property
    def text_model(self):
        """The CLaMP 3 towers of a catalog with text search (see catalog/text.py)."""
        if self._text_model is None:
            from mertsearch.catalog.text import load_model

            self._text_model = load_model(self)
        return self._text_model

    def use_text_model(self, model) -> None:
        self._text_model = model

    @property
    def text_index(self) -> TextIndex:
        """The tracks' text vectors, searchable (built in memory when first used)."""
        if self._text_index is None:
            from mertsearch.catalog.text import needs_text

            self._text_index = TextIndex(self.store, needs_text(self).dim)
        return self._text_index

    @property
    def index(self) -> VectorIndex:
        """The index of track vectors."""
        return self.indexes.tracks

    @property
    def transform(self) -> VectorTransform:
        """The centering/whitening fitted on this catalog (identity when there is none)."""
        if self._transform is None:
            spec = self.manifest.transform
            self._transform = IDENTITY if spec.kind == "none" else VectorTransform.load(self.directory / spec.file)
        return self._transform

    def use_transform(self, transform: VectorTransform) -> None:
        """The transform just fitted (by the writer), without reading its file back."""
        self._transform = transform

    @property
    def calibration(self) -> Calibration | None:
        """The similarity calibration of the searched layers and transform, as last taken up
        (None: the catalog has none, or one of other layers or another transform)."""
        calibration = self._calibration[1]
        if calibration is None or not calibration.fits(self.manifest.encoder.layers, self.manifest.transform.file):
            return None
        return calibration

    def transform_missing(self) -> bool:
        spec = self.manifest.transform
        return spec.kind != "none" and not (self.directory / str(spec.file)).is_file()
