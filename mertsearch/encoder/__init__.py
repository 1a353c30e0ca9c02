"""Models: registry, checkpoint loading (checkpoint), layer-truncated HubertModel (mert), pooling,
and the audio-to-vectors road shared by ingest and queries (embed). Import from the submodules:
only mert and embed pull in torch.
"""
