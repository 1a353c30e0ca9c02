"""Centering and whitening of vectors, fitted on a catalog and applied identically to queries.

Mean-pooled MERT vectors are anisotropic: almost any two tracks score a cosine of 0.8-0.97.
Subtracting the catalog's mean vector (centering), and optionally decorrelating the dimensions
(ZCA whitening), spreads the scores so they say how much more alike two tracks are than average.
Stored vectors stay as the model made them; only the index and the queries see the transform.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mertsearch.errors import InvalidArgumentError

KINDS = ("none", "center", "whiten")


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class VectorTransform:
    kind: str
    mean: np.ndarray | None = None
    matrix: np.ndarray | None = None  # (dim, dim), for whitening

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """Transformed copies of ``vectors`` (..., dim), L2-normalised again."""
        if self.kind == "none":
            return vectors
        out = vectors - self.mean
        if self.matrix is not None:
            out = out @ self.matrix
        return _normalize(out)

    @classmethod
    def fit(cls, kind: str, vectors: np.ndarray) -> VectorTransform:
        """Fit on ``vectors`` (n, dim): their mean, and for whitening their regularised covariance."""
        return cls.fit_batches(kind, lambda: [vectors])

    @classmethod
    def fit_batches(cls, kind: str, batches: Callable[[], Iterable[np.ndarray]]) -> VectorTransform:
        """Fit on the vectors ``batches()`` yields, a batch (n, dim) at a time: it is called once
        for the mean and again for whitening's covariance, summed batch by batch, so the fit holds
        one batch and a (dim, dim) matrix, never every track's vector."""
        if kind not in KINDS:
            raise InvalidArgumentError(f"transform must be one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "none":
            return cls("none")
        count, total = 0, None
        for batch in batches():
            count += len(batch)
            summed = batch.sum(axis=0, dtype=np.float64)
            total = summed if total is None else total + summed
        if count < 2:
            raise InvalidArgumentError(f"{kind} needs at least 2 tracks in the catalog, it has {count}")
        mean = (total / count).astype(np.float32)
        if kind == "center":
            return cls("center", mean=mean)
        covariance = np.zeros((len(mean), len(mean)))
        for batch in batches():
            centered = (batch - mean).astype(np.float64)
            covariance += centered.T @ centered
        covariance /= count - 1
        values, vecs = np.linalg.eigh(covariance)
        # Directions the catalog does not vary in (with fewer tracks than dimensions, many) carry no
        # information and would only amplify noise: they are projected out, the rest scaled to unit variance.
        keep = values > 1e-4 * max(float(values.max()), 1e-12)
        matrix = (vecs[:, keep] / np.sqrt(values[keep])) @ vecs[:, keep].T
        return cls("whiten", mean=mean, matrix=matrix.astype(np.float32))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {"kind": np.array(self.kind)}
        if self.mean is not None:
            arrays["mean"] = self.mean
        if self.matrix is not None:
            arrays["matrix"] = self.matrix
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, directory: Path) -> str:
        """Write the transform under a name from its content hash, atomically; return the file name."""
        data = self.to_bytes()
        name = f"transform-{hashlib.sha256(data).hexdigest()[:16]}.npz"
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".transform-", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, directory / name)
        return name

    @classmethod
    def load(cls, path: Path) -> VectorTransform:
        with np.load(path) as data:
            return cls(
                str(data["kind"]),
                mean=data["mean"] if "mean" in data else None,
                matrix=data["matrix"] if "matrix" in data else None,
            )


IDENTITY = VectorTransform("none")
