"""Music players kept fed from a catalog: an MPD queue that never runs dry (mpd.py). The beets
plugin lives in the ``beetsplug`` namespace package beside this one, where beets looks for it."""
