"""A Subsonic pass-through with the OpenSubsonic sonicSimilarity extension answered from the catalog
(docs/subsonic.md)."""

from mertsearch.subsonic.proxy import PassThrough, SubsonicSettings

__all__ = ["PassThrough", "SubsonicSettings"]
