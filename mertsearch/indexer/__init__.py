"""Ingest: find audio files (discover), decide what changed, embed and store them (pipeline),
decode in worker processes (reader, workers, batching) or on a Ray cluster (distributed), and
link new files to a recording already stored (duplicates)."""
