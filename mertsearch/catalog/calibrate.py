"""A catalog's similarity calibration (see mertsearch.search.calibration): fitted by the writer at
the end of an ingest that grew the catalog enough and by every reindex, and stored in the
database's meta, where readers and a running server take it up before their next query."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mertsearch.catalog.core import Core
from mertsearch.search.calibration import META_KEY, MIN_TRACKS, Calibration, fit


def fitted(
    cat: Core,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    transform_file: str | None = None,
) -> Calibration | None:
    """A calibration of the catalog as searched now, or through ``transform`` (stored as
    ``transform_file``) when a reindex is about to switch to it; None for a catalog too small."""
    if transform is None:
        transform, transform_file = cat.transform, cat.manifest.transform.file
    return fit(
        cat.store,
        transform,
        layers=cat.manifest.encoder.layers,
        transform_file=transform_file,
        tolerance=cat.windows.hop_s / 2,
        sampled=cat.windows.sample_s is not None,
    )


def stored(calibration: Calibration | None) -> dict[str, str]:
    """The meta entry that holds ``calibration`` (JSON null for none)."""
    return {META_KEY: "null" if calibration is None else calibration.to_json()}


def refresh(cat: Core) -> Calibration | None:
    """Fit the calibration again when it is due (none yet, other layers or transform, or a
    catalog grown or shrunk by half since) and store it; the caller holds the writer lock."""
    if cat.transform_missing():
        return None  # repair fits the transform again, and then the calibration
    current = Calibration.from_json(cat.store.meta(META_KEY))
    tracks = cat.store.count("tracks")
    spec = cat.manifest
    if current is None and tracks < MIN_TRACKS:
        return None
    if current is not None and not current.due(tracks, spec.encoder.layers, spec.transform.file):
        return current
    calibration = fitted(cat)
    cat.store.update_meta(stored(calibration))
    cat.take_up_meta()
    return calibration
