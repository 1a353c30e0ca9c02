"""A file's identity as audio: what tags, cover art and renames leave alone.

The hash covers the audio stream's packets as FFmpeg demuxes them (through PyAV), nothing
decoded: ID3v2, ID3v1 and APE tags, FLAC and Vorbis comments, MP4 atoms, pictures and padding
are not packets of the audio stream, so editing them (Picard, ``beet write``, a file manager)
leaves the hash as it was, even when the file's size or layout changes. Any change to the
encoded audio (another encoding, a cut, a new mix) changes it. Reading packets costs a fraction
of decoding them: a few milliseconds for a typical track.
"""

from __future__ import annotations

import hashlib
import os

from mertsearch.errors import AudioDecodeError

# The least probing FFmpeg allows when opening: the stream's rate and channels come from its
# header, and probing decodes (a WAV file took ten times longer to open with FFmpeg's defaults).
_OPEN = {"probesize": "32", "analyzeduration": "0"}


def audio_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the first audio stream's sample rate, channels and packet bytes.

    Not the codec's name (FFmpeg's decoders change names between builds, "mp3" or "mp3float"), nor
    the extradata: Vorbis and Opus keep their comment header, the tags, there."""
    import av

    digest = hashlib.sha256()
    try:
        with av.open(os.fspath(path), options=_OPEN, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream")
            stream = container.streams.audio[0]
            digest.update(f"{stream.codec_context.sample_rate}:{stream.codec_context.channels}\n".encode())
            for packet in container.demux(stream):
                if packet.size:
                    digest.update(bytes(packet))
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"cannot read the audio stream ({exc.strerror or exc})") from None
    return digest.hexdigest()
