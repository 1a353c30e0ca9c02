"""Queries: vectors to ranked tracks, with the time range in each track that matched best."""

from mertsearch.search.engine import SearchResult, TimeRange, rank_tracks

__all__ = ["SearchResult", "TimeRange", "rank_tracks"]
