"""The same recording in several files (other formats, bitrates, copies), found by its vectors.

Re-encodings of one recording give window vectors within cosine 0.9997 of each other, position
by position, where different recordings stay below 0.98 even when they sound alike; so two files
are one recording when their durations agree and every aligned window pair is that close.
"""

from __future__ import annotations

import numpy as np

from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import VectorIndex

WINDOW_COSINE = 0.999
DURATION_TOLERANCE_S = 1.0
# Candidates are the nearest tracks in the (transformed) track index scoring at least this.
CANDIDATE_SCORE = 0.98


def same_recording(a_windows: np.ndarray, a_duration: float, b_windows: np.ndarray, b_duration: float) -> bool:
    if abs(a_duration - b_duration) > DURATION_TOLERANCE_S or abs(len(a_windows) - len(b_windows)) > 1:
        return False
    n = min(len(a_windows), len(b_windows))
    return float(np.min(np.sum(a_windows[:n] * b_windows[:n], axis=1))) >= WINDOW_COSINE


def find_leader(
    index: VectorIndex,
    store: MetadataStore,
    *,
    exclude: int | None,
    vector: np.ndarray,
    window_vectors: np.ndarray,
    duration: float,
) -> int | None:
    """The leading track of the recording a new file (these vectors) is another file of, or None.

    ``vector`` is transformed like the index; ``window_vectors`` are the raw ones; the track
    ``exclude`` (the file's own older version) is never the answer.
    """
    scores, ids = index.search(vector[None, :], 8)
    candidates = [
        int(i)
        for i, score in zip(ids[0], scores[0], strict=True)
        if i >= 0 and score >= CANDIDATE_SCORE and i != exclude
    ]
    if not candidates:
        return None
    rows, windows = store.tracks_by_id(candidates), store.windows_of(candidates)
    for candidate in candidates:  # best first
        row = rows.get(candidate)
        if (
            row is not None
            and candidate in windows
            and same_recording(window_vectors, duration, windows[candidate][1], row.duration)
        ):
            leader = row.duplicate_of or row.id
            return None if leader == exclude else leader
    return None
