"""Exceptions raised by mertsearch.

Every error derives from :class:`MertSearchError`, and each subclass also derives from the
matching built-in exception, so callers can catch either.
"""


class MertSearchError(Exception):
    """Base class of every error mertsearch raises on purpose."""


class AudioDecodeError(MertSearchError, ValueError):
    """An audio file or buffer could not be decoded, or holds no usable audio."""


class AudioTooLongError(AudioDecodeError):
    """A clip is longer than the limit set for it (a query, an upload)."""


class ModelLoadError(MertSearchError, RuntimeError):
    """A model checkpoint could not be found, downloaded or loaded."""


class CatalogNotFoundError(MertSearchError, FileNotFoundError):
    """The catalog directory does not exist or holds no catalog."""


class CatalogBusyError(MertSearchError, RuntimeError):
    """Another process is writing to the catalog."""


class CatalogMismatchError(MertSearchError, ValueError):
    """The catalog was built with other encoder settings than the ones asked for."""


class TrackNotFoundError(MertSearchError, LookupError):
    """No track in the catalog has the given id or path."""


class InvalidArgumentError(MertSearchError, ValueError):
    """An argument is out of range or inconsistent with others."""


class DatabaseError(MertSearchError, ConnectionError):
    """The metadata database cannot be reached or used (wrong URL, server down, driver missing)."""


class ClusterError(MertSearchError, RuntimeError):
    """A distributed run failed on the cluster (the model would not load on a node, a lost cluster)."""


class PlayerError(MertSearchError, RuntimeError):
    """A music player refused a request, or its client library is not installed."""


class VectorStoreError(MertSearchError, ConnectionError):
    """The catalog's vector store (a Milvus server or Milvus Lite file) cannot be reached or used."""
