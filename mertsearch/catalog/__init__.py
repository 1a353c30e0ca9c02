"""A catalog: a directory holding the metadata database, the FAISS index and the manifest.

catalog/
  catalog.db        SQLite: tracks, windows and their vectors, failures (the source of truth), unless
                    the manifest names another database (a PostgreSQL URL, without its password)
  index/            tracks-v<N>.faiss, derived from the stored vectors, rebuilt when stale
  manifest.json     everything that shapes the vectors; checked on every open

The package, lowest first: ``layout`` (where things live, and opening or creating a catalog's
manifest and database), ``core`` (the opened parts, loaded when first needed, and the writer
lock), ``ingest``, ``queries``, ``lookups`` and ``maintenance`` (what is done with them), and
``facade`` (:class:`Catalog`, which delegates to those).
"""

from mertsearch.catalog.clip import embed
from mertsearch.catalog.facade import Catalog

__all__ = ["Catalog", "embed"]
