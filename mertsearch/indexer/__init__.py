"""Ingest: find audio files, decide what changed, embed and store them."""

from mertsearch.indexer.discover import AUDIO_EXTENSIONS, discover_files
from mertsearch.indexer.pipeline import FailedFile, IndexProgress, IndexReport, run_index

__all__ = [
    "AUDIO_EXTENSIONS",
    "FailedFile",
    "IndexProgress",
    "IndexReport",
    "discover_files",
    "run_index",
]
