"""Models: registry, checkpoint loading (checkpoint), layer-truncated HubertModel (mert), pooling,
the audio-to-vectors road shared by ingest and queries (embed), and how every executor opens a
catalog's model (runtime). Import from the submodules: only mert and embed pull in torch.
"""
