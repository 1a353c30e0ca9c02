"""How good the search is: excerpt identification (excerpts), label retrieval and score spreads
(metrics), the whole evaluation and the per-layer label report (evaluate), and the files written
(report). It works on the catalogs it is handed (see protocol.CatalogLike) and never imports
mertsearch.catalog, which calls it.
"""
