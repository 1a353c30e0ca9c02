"""Storage: SQL metadata (the source of truth), the FAISS index derived from it, and the manifest.

Nothing here imports torch, so tools that only read a catalog stay light.
"""

from mertsearch.storage.manifest import check_compatible, read_manifest, write_manifest
from mertsearch.storage.store import MetadataStore, TrackRecord, from_blob
from mertsearch.storage.vector_index import VectorIndex

__all__ = [
    "MetadataStore",
    "TrackRecord",
    "VectorIndex",
    "check_compatible",
    "from_blob",
    "read_manifest",
    "write_manifest",
]
