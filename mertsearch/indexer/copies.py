"""How far this catalog's model puts two files of one recording, measured on its own tracks.

An excerpt of a few of the catalog's tracks (a fixed sample) is copied the ways a library comes
to hold one recording twice: MP3 and AAC at 128 kbit/s, and a start trimmed by 1 s. Each copy is
embedded exactly as an ingest embeds a file (FFmpeg decodes its bytes at their own rate, then the
catalog's resampler, windows and model), and its aligned distance to the excerpt's windows as the
catalog stores them is taken. The excerpts of distinct tracks are also compared with each other:
how close distinct music comes, even where the catalog is too small to fit that on. The duplicate
rule's limit is set from both (see DuplicateRule.fitted), so a catalog of three tracks and one of
millions find the same copies.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.audio.copies import CopyKind
from mertsearch.config import WindowSettings
from mertsearch.errors import MertSearchError
from mertsearch.indexer.duplicates import DURATION_TOLERANCE_S, CopyDistances, Windows, aligned_distance
from mertsearch.storage.schema import Track
from mertsearch.storage.store import MetadataStore

if TYPE_CHECKING:
    from mertsearch.encoder.mert import MertEncoder

COPY_KINDS = {
    "mp3 128 kbit/s": CopyKind("mp3", 128_000),
    "aac 128 kbit/s": CopyKind("m4a", 128_000),
    "1 s trimmed": CopyKind("flac", trim_s=1.0),
}
# Tracks measured, and the windows of the excerpt of each (from its middle): at most 3 x 3 x 4 windows
# through the model (MERT-v1-95M on a 2-core CPU: about 30 s; on a GPU, under a second).
COPY_TRACKS = 3
EXCERPT_WINDOWS = 4
# Tracks tried at most, so a catalog whose files are out of reach (a disk not mounted) costs little.
TRIES = 4 * COPY_TRACKS


def measure_copies(store: MetadataStore, encoder: MertEncoder, windows: WindowSettings) -> CopyDistances | None:
    """The farthest aligned distance of each of COPY_KINDS from its excerpt, over up to COPY_TRACKS
    tracks at least two windows long, and the nearest two of their excerpts that hold distinct
    music (see ``_distinct``). The tracks are drawn with a fixed seed, those whose durations differ
    from the ones drawn before first (so two files of one recording are seldom both drawn); files
    that cannot be decoded or are silent there are passed over.

    None, with nothing measured, while no two tracks that lead their recordings have durations
    that fit: the limit decides between such files only, so measuring would decide nothing (and
    cost the model's time)."""
    links = store.track_links()
    durations = np.sort([duration for _, duration, leader in links if leader is None])
    if len(durations) < 2 or float(np.diff(durations).min()) > DURATION_TOLERANCE_S:
        return None
    shortest = windows.window_s + windows.hop_s
    leaders = [(i, duration) for i, duration, leader in links if leader is None and duration >= shortest]
    drawn = [leaders[n] for n in np.random.default_rng(0).permutation(len(leaders))[:TRIES]]
    apart: list[tuple[int, float]] = []
    for track in drawn:
        if all(abs(track[1] - other[1]) > DURATION_TOLERANCE_S for other in apart):
            apart.append(track)
    first = {i for i, _ in apart}
    order = [i for i, _ in apart] + [i for i, _ in drawn if i not in first]
    rows = store.tracks_by_id(order)
    farthest: dict[str, float] = {}
    excerpts: list[tuple[float, Windows]] = []  # (the track's duration, its excerpt's windows)
    for track_id in order:
        if len(excerpts) == COPY_TRACKS:
            break
        if track_id not in rows:
            continue
        row = rows[track_id]
        try:
            original, distances = _copy_distances(store, row, encoder, windows)
        except (MertSearchError, OSError, RuntimeError):  # gone, changed, unreadable, silent there
            continue
        excerpts.append((row.duration, original))
        for name, distance in distances.items():
            farthest[name] = max(farthest.get(name, 0.0), distance)
    longest = max((excerpt.duration for _, excerpt in excerpts), default=0.0)
    distinct = _distinct(excerpts, max(farthest.values(), default=0.0))
    return CopyDistances(farthest, len(excerpts), list(encoder.layers), len(links), longest, distinct)


def _distinct(excerpts: list[tuple[float, Windows]], farthest: float) -> float | None:
    """The nearest two excerpts of distinct music, with as much room to shift as the rule's fit
    gives (None: no such pair). Two tracks hold distinct music when their durations differ too
    much for copies, or their excerpts lie further apart than any copy measured: two files of one
    recording both drawn would lie as close as copies, and must not pass for distinct music."""
    found = []
    for (a_s, a), (b_s, b) in itertools.combinations(excerpts, 2):
        distance = aligned_distance(a, b, most_shift_s=DURATION_TOLERANCE_S)[0]
        if np.isfinite(distance) and (abs(a_s - b_s) > DURATION_TOLERANCE_S or distance > farthest):
            found.append(distance)
    return min(found, default=None)


def _copy_distances(
    store: MetadataStore, row: Track, encoder: MertEncoder, windows: WindowSettings
) -> tuple[Windows, dict[str, float]]:
    """(the excerpt's windows, each copy's distance from them) for a catalog track."""
    from mertsearch.audio.decode import native_audio

    # Whole windows on the track's grid, from one window's start to another's end, with no tail
    # window: a codec's padding at the end would make one, a few milliseconds off the original's,
    # and what that does to a vector says how the model takes a shift, not a codec (a trimmed
    # copy's tail window meets one of the original's).
    hop = windows.hop_s
    count = min(EXCERPT_WINDOWS, int((row.duration - windows.window_s) // hop) + 1)
    length = windows.window_s + (count - 1) * hop
    start = hop * ((row.duration - length) / 2 // hop)
    samples, rate = native_audio(row.path, start=start, end=start + length)
    original = _stored(store, row, start, count, windows) or _embedded((samples, rate), encoder, windows)
    return original, {
        name: aligned_distance(_embedded(kind.encode(samples, rate), encoder, windows), original)[0]
        for name, kind in COPY_KINDS.items()
    }


def _stored(store: MetadataStore, row: Track, start: float, count: int, windows: WindowSettings) -> Windows | None:
    """The ``count`` stored windows from ``start`` on, on the excerpt's time line, where they are
    what embedding the excerpt would give: not where the file changed since it was stored, nor
    where the catalog keeps windows spread over the track (--sample)."""
    if windows.sample_s is not None and row.duration > windows.sample_s:
        return None
    stat = os.stat(row.path)
    if (stat.st_size, stat.st_mtime_ns) != (row.size, row.mtime_ns):
        return None
    stored = store.windows_of([row.id]).get(row.id)
    if stored is None:
        return None
    times, vectors = stored
    wanted = start + windows.hop_s * np.arange(count)
    at = np.searchsorted(times[:, 0], wanted - 1e-3)
    if at[-1] >= len(times) or not np.allclose(times[at, 0], wanted, atol=1e-3):
        return None
    return Windows(
        times[at, 0] - start, times[at, 1] - start, vectors[at], windows.window_s + (count - 1) * windows.hop_s
    )


def _embedded(source, encoder: MertEncoder, windows: WindowSettings) -> Windows:
    """A file's windows as an ingest stores them (see mertsearch.indexer.reader)."""
    from mertsearch.audio.decode import stream_audio
    from mertsearch.encoder.embed import embed_chunks

    embedding = embed_chunks(encoder, stream_audio(source, sample_rate=encoder.sample_rate), windows)
    return Windows(embedding.window_starts, embedding.window_ends, embedding.window_vectors, embedding.duration)
