"""The catalog's text vectors (CLaMP 3's shared text and music space, one per track) as a FAISS
index, and the sample that calibrates their scores.

The database holds the vectors (table ``text_vectors``); the index is built from them in memory
the first time a catalog is searched by text, as exact search while small and an inverted file
with 8-bit codes past that (vector_index.choose_factory), whose candidates the engine scores again
exactly from the stored vectors. It follows the database as readers' indexes do (storage/indexes):
rows stored since it was built are added beside it, and it is built again only once vectors were
taken out. One vector a track: at a million tracks the build reads 3 GB from the database once.
"""

from __future__ import annotations

import numpy as np

from mertsearch.storage.indexes import Layered
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import FLAT, VectorIndex, choose_factory

# Tracks whose text scores calibrate a text query's (see :meth:`TextIndex.similarity`).
CALIBRATION_SAMPLE = 2_000


class TextIndex:
    def __init__(self, store: MetadataStore, dim: int) -> None:
        self.store = store
        self.dim = dim
        self._index: Layered | None = None
        self._built_at = -1  # the data version the base was built at
        self._version = -1  # the data version the index reflects
        self._sample = np.empty((0, dim), np.float32)

    def current(self) -> Layered:
        """The index, reflecting the database now."""
        version = self.store.data_version()
        if self._index is None or self.store.removed_at() > self._built_at:
            self._build(version)
        elif version != self._version:
            for ids, vectors in self.store.text_vectors(after=self._index.high_water):
                self._index.add(ids, vectors)
            self._version = version
        return self._index

    def _build(self, version: int) -> None:
        count = self.store.count("text_vectors")
        base = VectorIndex(self.dim, choose_factory(count))
        if base.needs_training:
            base.train(self._draw(max(39 * base.lists, CALIBRATION_SAMPLE)))
        for ids, vectors in self.store.text_vectors():
            base.add(ids, vectors)
        self._index = Layered(base, VectorIndex(self.dim, FLAT))
        self._built_at = self._version = version
        self._sample = self._draw(CALIBRATION_SAMPLE)

    def _draw(self, size: int) -> np.ndarray:
        return self.store.sample_vectors("text_vectors", size)

    def __len__(self) -> int:
        return len(self.current())

    def similarity(self, query: np.ndarray):
        """For one query vector: the share of a fixed random sample of the catalog's tracks (up to
        CALIBRATION_SAMPLE) whose text score is lower than a given score. Text and music scores
        live on their own scale (CLaMP 3's best matches score far below audio pairs), so this
        says how a track stands against the catalog for these words, as audio results' similarity
        says how a pair stands against random pairs."""
        self.current()
        scores = np.sort(self._sample @ query) if len(self._sample) else np.zeros(1, np.float32)

        def share(score: float) -> float:
            return round(float(np.searchsorted(scores, score, side="left") / len(scores)), 4)

        return share
