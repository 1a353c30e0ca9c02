"""CLaMP 3's audio input, taken from the MERT-v1-95M run a catalog makes anyway.

CLaMP 3 (sanderwood/clamp3) reads a track as the sequence of its MERT-v1-95M window features:
5 s windows from 0 without overlap, a last shorter window kept as it is when at least 1 s long
(else dropped), each window embedded alone, its 13 hidden states averaged over frames and then
over layers. A catalog with the default windows (5 s, every 5 s, tails from 1 s) embeds those
same full windows; it adds the short last window (audio.windows, ``text_tail``) and keeps every
layer's mean while it ingests (MertEncoder.text).

One step differs: CLaMP 3 scales each whole track to zero mean and unit variance before
windowing, the catalog does not. MERT-v1's first convolution has no bias and is followed by a
per-channel normalisation over time, which removes any scale and offset of its input; the two
agree to the normalisation's epsilon (see the tests, which run the recipe step by step).
"""

from __future__ import annotations

import numpy as np

from mertsearch.config import EncoderSpec, WindowSettings
from mertsearch.encoder.registry import lookup
from mertsearch.errors import InvalidArgumentError

# The model whose features CLaMP 3 reads, and the windows of its recipe.
TEXT_MODEL = "mert-v1-95m"
TEXT_WINDOWS = WindowSettings(window_s=5.0, hop_s=5.0, min_tail_s=1.0)
# The longest description a text query may be, in characters.
MAX_TEXT_CHARS = 2000


def check_text_catalog(windows: WindowSettings, encoder: EncoderSpec, feature_dim: int) -> None:
    """Refuse text search where the catalog's run cannot give CLaMP 3 its features: another model
    than MERT-v1-95M (by name, or by its rate and width), or other windows than the recipe's."""
    known = lookup(encoder.source) or lookup(encoder.repo_id)
    if (known is not None and known.name != TEXT_MODEL) or (encoder.sample_rate, encoder.dim) != (24000, feature_dim):
        raise InvalidArgumentError(
            f"text search needs a catalog of {TEXT_MODEL} (CLaMP 3 reads that model's features); "
            f"this one is of {encoder.source} ({encoder.dim} dims at {encoder.sample_rate} Hz)"
        )
    if (windows.window_s, windows.hop_s, windows.min_tail_s) != (5.0, 5.0, 1.0) or windows.sample_s is not None:
        raise InvalidArgumentError(
            "text search needs the default windows (5 s, every 5 s, whole tracks, no --sample): "
            "CLaMP 3 reads every 5 s window of a track"
        )


def split_text_windows(
    sample_rate: int, starts: np.ndarray, lengths: np.ndarray, means: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(starts, lengths, means) of the searched windows, and CLaMP 3's features (windows, dim).

    ``means`` are every layer's mean over frames (windows, layers, dim), in any order. Only the
    text recipe's last window is shorter than the rest (a track shorter than one window has one
    window, its own length): it serves the features only. The features are the windows that start
    on the 5 s grid, in time order, each the mean of its layers; the catalog's own last window,
    which ends at the track's end, starts off the grid and is left out of them.
    """
    window = round(TEXT_WINDOWS.window_s * sample_rate)
    text_only = lengths < lengths.max()
    on_grid = np.flatnonzero(starts % window == 0)
    order = on_grid[np.argsort(starts[on_grid], kind="stable")]
    features = means[order].mean(axis=1)
    keep = ~text_only
    return starts[keep], lengths[keep], means[keep], features.astype(np.float32)
