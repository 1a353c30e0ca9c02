"""What evaluation uses of an opened catalog, so it can be typed without importing the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mertsearch.audio.decode import AudioInput
    from mertsearch.config import Manifest, WindowSettings
    from mertsearch.encoder.mert import MertEncoder
    from mertsearch.encoder.pooling import Embedding
    from mertsearch.search.calibration import Calibration
    from mertsearch.search.engine import SearchResult
    from mertsearch.storage.store import MetadataStore
    from mertsearch.storage.transform import VectorTransform


class CatalogLike(Protocol):
    """An opened catalog: mertsearch.catalog.Catalog is one. The catalog hands itself, and the
    catalogs it makes for a comparison (the spectral baseline, a scratch copy), to evaluation."""

    directory: Path
    manifest: Manifest  # the encoder's layers, kept_layers, dim; the transform's kind
    windows: WindowSettings
    store: MetadataStore  # durations(), all_track_vectors(), track_layer_vectors(), tracks_by_id()

    @property
    def encoder(self) -> MertEncoder: ...  # only its sample_rate is read

    def embed(self, source: AudioInput, *, probe: bool = False) -> Embedding: ...

    def search_embedding(self, embedding: Embedding, *, k: int = 10) -> list[SearchResult]: ...

    def reindex(self, *, layers: Sequence[int] | None = None) -> dict: ...

    @property
    def transform(self) -> VectorTransform: ...

    @property
    def calibration(self) -> Calibration | None: ...
