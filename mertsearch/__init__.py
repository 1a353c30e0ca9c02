"""mertsearch: find similar music with MERT embeddings, FAISS and SQLite.

from mertsearch import Catalog

with Catalog.create("./cat", model="mert-v1-95m", layer=7) as catalog:
    catalog.index_paths(["~/Music"])
    for hit in catalog.search("clip.mp3", k=10):
        print(hit.score, hit.artist, hit.title, hit.offset)  # where the clip starts in the track
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
from mertsearch.version import __version__

# The rest of the public API is imported when first asked for, so that importing one part
# (``import mertsearch.audio.decode`` on a Ray node, say) does not load the catalog, FAISS and
# SQLAlchemy with it.
_LAZY = {
    "Catalog": "mertsearch.catalog",
    "embed": "mertsearch.catalog",
    "Embedding": "mertsearch.encoder.pooling",
    "FailedFile": "mertsearch.indexer.pipeline",
    "IndexProgress": "mertsearch.indexer.pipeline",
    "IndexReport": "mertsearch.indexer.pipeline",
    "SearchOptions": "mertsearch.search",
    "SearchResult": "mertsearch.search",
    "TimeRange": "mertsearch.search",
    "Filters": "mertsearch.storage.filters",
}

if TYPE_CHECKING:
    from mertsearch.catalog import Catalog, embed
    from mertsearch.encoder.pooling import Embedding
    from mertsearch.indexer.pipeline import FailedFile, IndexProgress, IndexReport
    from mertsearch.search import SearchOptions, SearchResult, TimeRange
    from mertsearch.storage.filters import Filters


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mertsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "SearchOptions",
    "SearchResult",
    "TimeRange",
    "TrackNotFoundError",
    "__version__",
    "embed",
]
