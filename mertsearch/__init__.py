"""mertsearch: find similar music with MERT embeddings, FAISS and SQLite.

from mertsearch import Catalog

with Catalog.create("./cat", model="mert-v1-95m", layer=7) as catalog:
    catalog.index_paths(["~/Music"])
    for hit in catalog.search("clip.mp3", k=10):
        print(hit.score, hit.artist, hit.title, hit.match.start)
"""

__version__ = "0.1.0"

from mertsearch.catalog import Catalog, embed  # noqa: E402
from mertsearch.encoder.pooling import Embedding  # noqa: E402
from mertsearch.errors import (  # noqa: E402
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
from mertsearch.indexer.pipeline import FailedFile, IndexProgress, IndexReport  # noqa: E402
from mertsearch.search import SearchResult, TimeRange  # noqa: E402
from mertsearch.storage.filters import Filters  # noqa: E402

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
