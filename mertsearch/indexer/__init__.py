"""Ingest: find audio files (discover), decide what changed, embed and store them (pipeline)."""
