"""Audio in: decode files, bytes and arrays to mono float32 at the model's rate; cut windows."""

from mertsearch.audio.decode import AudioInput, decode_audio
from mertsearch.audio.tags import TrackTags, read_tags
from mertsearch.audio.windows import WindowPlan, plan_windows

__all__ = ["AudioInput", "TrackTags", "WindowPlan", "decode_audio", "plan_windows", "read_tags"]
