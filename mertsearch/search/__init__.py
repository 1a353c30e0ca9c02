"""Queries: vectors to ranked tracks, with the time ranges in each track and the query that matched."""

from mertsearch.search.engine import MODES, Query, Ranking, Rules, SearchResult, TimeRange, rank
from mertsearch.search.options import SearchOptions

__all__ = ["MODES", "Query", "Ranking", "Rules", "SearchOptions", "SearchResult", "TimeRange", "rank"]
