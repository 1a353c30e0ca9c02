"""From window vectors to the vectors that are stored and searched."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Embedding:
    """A track or clip as vectors: one per window (L2-normalised) and the pooled one."""

    vector: np.ndarray
    window_vectors: np.ndarray
    window_starts: np.ndarray
    window_ends: np.ndarray
    duration: float


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def pool_track(window_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(window vectors, track vector): each window L2-normalised, the track their normalised mean."""
    windows = l2_normalize(window_means)
    return windows, l2_normalize(windows.mean(axis=0))
