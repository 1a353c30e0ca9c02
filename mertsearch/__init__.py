"""mertsearch: find similar music with MERT embeddings, FAISS and SQLite.

from mertsearch import Catalog

with Catalog.create("./cat", model="mert-v1-95m", layer=7) as catalog:
    catalog.index_paths(["~/Music"])
    for hit in catalog.search("clip.mp3", k=10):
        print(hit.score, hit.artist, hit.title, hit.match.start)
"""

from mertsearch.catalog import Catalog, embed
from mertsearch.encoder.pooling import Embedding
from mertsearch.errors import (
    AudioDecodeError,
    AudioTooLongError,
    CatalogBusyError,
    CatalogMismatchError,
    CatalogNotFoundError,
    InvalidArgumentError,
    MertSearchError,
    ModelLoadError,
    TrackNotFoundError,
)
from mertsearch.indexer.pipeline import FailedFile, IndexProgress, IndexReport
from mertsearch.search import SearchResult, TimeRange
from mertsearch.storage.filters import Filters
from mertsearch.version import __version__

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "Catalog",
    "CatalogBusyError",
    "CatalogMismatchError",
    "CatalogNotFoundError",
    "Embedding",
    "FailedFile",
    "Filters",
    "IndexProgress",
    "IndexReport",
    "InvalidArgumentError",
    "MertSearchError",
    "ModelLoadError",
    "SearchResult",
    "TimeRange",
    "TrackNotFoundError",
    "__version__",
    "embed",
]
