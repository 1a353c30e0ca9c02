"""From per-layer window vectors to the vectors that are stored and searched.

A window's searchable vector is the L2-normalised mean of its L2-normalised layer vectors (just
the normalised layer vector when one layer is searched); a track's is the L2-normalised mean of
its window vectors. The same functions serve ingest, queries and switching layers later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mertsearch.errors import InvalidArgumentError


@dataclass(frozen=True)
class Probes:
    """Windows of a clip off the catalog's grid (see audio.windows.ProbeCutter), searchable like
    window vectors; ``layer_vectors`` (probes, layers, dim) when every layer is kept."""

    vectors: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    layer_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class Embedding:
    """A track or clip as vectors: one per window (L2-normalised) and the pooled one.

    ``layer_vectors`` (layers, dim) and ``layer_window_vectors`` (windows, layers, dim) hold every
    computed layer, normalised, when the encoder keeps all layers; else they are None.
    ``probes``: a clip's probe window, when it was asked for; it takes no part in ``vector``.
    ``text_vector``: the track in CLaMP 3's text and music space, in catalogs with text search.
    """

    vector: np.ndarray
    window_vectors: np.ndarray
    window_starts: np.ndarray
    window_ends: np.ndarray
    duration: float
    layer_vectors: np.ndarray | None = None
    layer_window_vectors: np.ndarray | None = None
    probes: Probes | None = None
    text_vector: np.ndarray | None = None


def captured_layers(layers: Sequence[int], kept_layers: Sequence[int]) -> tuple[int, ...]:
    """The hidden states an encoder computes: every kept layer (a catalog keeping them all, to switch
    layers later), else only the searched ones, in order, once each."""
    return tuple(kept_layers) or tuple(sorted(set(layers)))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def searchable_vectors(layer_windows: np.ndarray, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(window vectors, track vector) from normalised per-layer window vectors (windows, layers, dim)."""
    windows = l2_normalize(layer_windows[:, list(positions)].mean(axis=1))
    return windows, l2_normalize(windows.mean(axis=0))


def pool(
    means: np.ndarray, *, capture: Sequence[int], layers: Sequence[int], keep_all: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(window vectors, track vector, per-layer track vectors, per-layer window vectors) of a track.

    ``means`` are the raw mean-over-frames vectors (windows, len(capture), dim); ``layers`` the
    searched ones among ``capture``. The per-layer parts are None unless ``keep_all``.
    """
    layer_windows = l2_normalize(means)
    window_vectors, vector = searchable_vectors(layer_windows, [list(capture).index(layer) for layer in layers])
    if not keep_all:
        return window_vectors, vector, None, None
    return window_vectors, vector, l2_normalize(layer_windows.mean(axis=0)), layer_windows


def for_layers(embedding: Embedding, positions: Sequence[int]) -> Embedding:
    """The embedding as if only the kept layers at ``positions`` were searched (see searchable_vectors).

    Needs an embedding made with every layer kept; the same arithmetic as switching a catalog's
    layers, so the result matches a catalog reindexed to those layers.
    """
    if embedding.layer_window_vectors is None:
        raise InvalidArgumentError("this embedding holds no per-layer vectors (its encoder did not keep every layer)")
    window_vectors, vector = searchable_vectors(embedding.layer_window_vectors, positions)
    probes = embedding.probes
    if probes is not None:
        if probes.layer_vectors is None:
            raise InvalidArgumentError("this embedding's probes hold no per-layer vectors")
        probes = Probes(searchable_vectors(probes.layer_vectors, positions)[0], probes.starts, probes.ends)
    return Embedding(
        vector=vector,
        window_vectors=window_vectors,
        window_starts=embedding.window_starts,
        window_ends=embedding.window_ends,
        duration=embedding.duration,
        probes=probes,
    )


def blended_cosines(
    vectors: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    weight: np.ndarray,
    low_cos: np.ndarray,
    high_cos: np.ndarray,
) -> np.ndarray:
    """Cosines of query vectors with the normalised blend (1 - w) u + w v of the unit windows
    ``vectors[low]`` and ``vectors[high]``, from the query's cosines with each (``low_cos``,
    ``high_cos``): |(1-w)u + wv|^2 = (1-w)^2 + w^2 + 2w(1-w)(u.v), and ``high`` is ``low + 1``
    wherever the blend is used."""
    count = len(vectors)
    link = np.einsum("ij,ij->i", vectors[:-1], vectors[1:]) if count > 1 else np.ones(1)
    together = link[np.clip(low, 0, max(count - 2, 0))]
    norm = np.sqrt(np.maximum((1 - weight) ** 2 + weight**2 + 2 * weight * (1 - weight) * together, 1e-12))
    return ((1 - weight) * low_cos + weight * high_cos) / norm
