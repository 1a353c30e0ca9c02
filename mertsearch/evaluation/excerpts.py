"""Excerpt identification: can the catalog find where a (degraded) piece of one of its tracks comes from?

Random excerpts of catalog tracks, starting off the window grid, are played to the search as
they are and after each degradation a listener's copy may have suffered; the report gives the
recall of the source track at 1 and 10, and how far the reported start of the excerpt in the track
(the first result's ``offset``) is from the truth.
Everything is drawn from one seed, so two runs on the same catalog give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.encoder.pooling import Embedding, for_layers
from mertsearch.evaluation.similarity import similarity_figures

if TYPE_CHECKING:
    from mertsearch.evaluation.protocol import CatalogLike
    from mertsearch.search.engine import SearchResult

# name -> (samples, rate, rng, other excerpt) -> degraded samples
Degradation = Callable[[np.ndarray, int, np.random.Generator, np.ndarray], np.ndarray]


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12)


def _noise(snr_db: float) -> Degradation:
    def degrade(samples, rate, rng, other):
        noise = rng.standard_normal(len(samples)).astype(np.float32)
        return samples + noise * (_rms(samples) / 10 ** (snr_db / 20) / _rms(noise))

    return degrade


def _gain(db: float) -> Degradation:
    return lambda samples, rate, rng, other: samples * np.float32(10 ** (db / 20))


def _lowpass(cutoff: float) -> Degradation:
    def degrade(samples, rate, rng, other):
        import torch
        import torchaudio.functional as F

        return F.lowpass_biquad(torch.from_numpy(samples), rate, cutoff).numpy()

    return degrade


def _mp3(bit_rate: int) -> Degradation:
    def degrade(samples, rate, rng, other):
        from mertsearch.audio.copies import CopyKind
        from mertsearch.audio.decode import decode_audio

        return decode_audio(CopyKind("mp3", bit_rate).encode(samples, rate), sample_rate=rate)

    return degrade


def _speed(factor: float) -> Degradation:
    def degrade(samples, rate, rng, other):
        import torch
        import torchaudio.functional as F

        # Played faster (factor > 1): the same samples taken as recorded at rate * factor.
        return F.resample(torch.from_numpy(samples), round(rate * factor), rate).numpy()

    return degrade


def _mix(db: float) -> Degradation:
    def degrade(samples, rate, rng, other):
        other = other[: len(samples)]
        padded = np.zeros_like(samples)
        padded[: len(other)] = other
        return samples + padded * (_rms(samples) / _rms(padded) * 10 ** (db / 20))

    return degrade


DEGRADATIONS: dict[str, Degradation] = {
    "clean": lambda samples, rate, rng, other: samples,
    "noise 20 dB SNR": _noise(20),
    "noise 5 dB SNR": _noise(5),
    "gain -12 dB": _gain(-12),
    "low-pass 4 kHz": _lowpass(4000),
    "mp3 64 kbit/s": _mp3(64000),
    "speed +3%": _speed(1.03),
    "speed -3%": _speed(0.97),
    "mixed with another track (-6 dB)": _mix(-6),
}


@dataclass(frozen=True)
class Excerpt:
    track_id: int
    path: str
    start: float
    samples: np.ndarray


# An excerpt whose peak is below this (-60 dBFS) is mostly silence: no fair query, and its -12 dB copy
# could read as silent audio, which a search refuses.
AUDIBLE_PEAK = 1e-3


def draw_excerpts(catalog: CatalogLike, *, count: int, seconds: float, rng: np.random.Generator) -> list[Excerpt]:
    """Up to ``count`` excerpts of distinct tracks long enough, each starting off the window grid.

    A drawn excerpt that is (nearly) silent is passed over for the next track in the drawn order.
    """
    from mertsearch.audio.decode import decode_audio
    from mertsearch.errors import AudioDecodeError

    rate = catalog.encoder.sample_rate
    hop = catalog.windows.hop_s
    candidates = [
        (track_id, path, duration)
        for track_id, path, duration in catalog.store.durations()
        if duration >= seconds + hop
    ]
    excerpts = []
    for index in rng.permutation(len(candidates)):
        if len(excerpts) == count:
            break
        track_id, path, duration = candidates[index]
        # A window-grid position plus a fraction of a hop, so the excerpt never lines up with stored windows.
        slot = int(rng.integers(0, int((duration - seconds) // hop) + 1))
        start = min(slot * hop + float(rng.uniform(0.2, 0.8)) * hop, duration - seconds)
        try:
            samples = decode_audio(path, sample_rate=rate, start=start, end=start + seconds)
        except AudioDecodeError:  # silent, or the file changed since it was indexed
            continue
        if float(np.abs(samples).max()) < AUDIBLE_PEAK:
            continue
        excerpts.append(Excerpt(track_id, path, round(start, 3), samples))
    return excerpts


def degraded(excerpts: list[Excerpt], rate: int, rng: np.random.Generator) -> Iterator[tuple[str, Excerpt, np.ndarray]]:
    """(degradation, excerpt, samples) for every excerpt under every degradation, always in the same
    order, so one seed gives every listener (catalogs, bench/musly.py) the very same sounds."""
    for name, degrade in DEGRADATIONS.items():
        for number, excerpt in enumerate(excerpts):
            other = excerpts[(number + 1) % len(excerpts)].samples
            yield name, excerpt, degrade(excerpt.samples, rate, rng, other).astype(np.float32)


class _Tally:
    """Hits at rank 1 and within k, and position errors, per degradation, for one listener."""

    def __init__(self, excerpts: int, k: int) -> None:
        self.excerpts, self.k = excerpts, k
        self.hits1 = dict.fromkeys(DEGRADATIONS, 0)
        self.hitsk = dict.fromkeys(DEGRADATIONS, 0)
        self.errors: dict[str, list[float]] = {name: [] for name in DEGRADATIONS}

    def add(self, name: str, excerpt: Excerpt, results: list[SearchResult]) -> SearchResult | None:
        """Count one answer; the first result when it is the excerpt's source."""
        ranks = [rank for rank, r in enumerate(results) if excerpt.path in (r.path, *r.alternates)]
        self.hitsk[name] += bool(ranks)
        if not ranks or ranks[0] != 0:
            return None
        best = results[0]
        self.hits1[name] += 1
        self.errors[name].append(abs(best.offset - excerpt.start))
        return best

    def table(self) -> dict[str, dict]:
        return {
            name: {
                "recall_at_1": round(self.hits1[name] / self.excerpts, 4),
                f"recall_at_{self.k}": round(self.hitsk[name] / self.excerpts, 4),
                "median_position_error_s": (
                    round(float(np.median(self.errors[name])), 3) if self.errors[name] else None
                ),
            }
            for name in DEGRADATIONS
        }


@dataclass
class Identification:
    """What :func:`identify` found.

    ``tables``: per catalog, {degradation: recall@1, recall@k, median position error};
    ``true_scores``: the first catalog's scores of its true matches found first on clean excerpts
    (as searched: segment alignment, in the catalog's transform); ``clean_vectors``: (source track
    id, the clean excerpt's pooled vector of the searched layers, untransformed) for every excerpt;
    ``layers``: with a layer sweep, [{"layer", "degradations"}] for every kept layer;
    ``clean_results``: each clean excerpt with the first catalog's results;
    ``similarity_layers``: with a layer sweep, the similarity figures of each kept layer.
    """

    tables: list[dict]
    true_scores: list[float]
    clean_vectors: list[tuple[int, np.ndarray]]
    layers: list[dict] | None = None
    clean_results: list[tuple[Excerpt, list[SearchResult]]] = field(default_factory=list)
    similarity_layers: list[dict] | None = None


def identify(
    catalogs: list[CatalogLike],
    excerpts: list[Excerpt],
    rng: np.random.Generator,
    *,
    k: int = 10,
    sweep: CatalogLike | None = None,
) -> Identification:
    """Recall@1, recall@k and position error of the source file, per degradation, for each catalog
    (all holding the same files: every catalog hears the very same degraded excerpt).

    ``sweep``, a scratch copy of the first catalog that keeps every layer, gives the same table for
    each kept layer: each degraded excerpt is embedded once by the first catalog (its encoder
    computes every layer then), its per-layer vectors are kept (excerpts x degradations x windows x
    layers x dim floats: about 54 MB for 50 excerpts of 10 s, 13 layers of 768), and the copy is
    switched to each layer in turn (``reindex``, from stored vectors) and searched with that
    layer's query vectors, through the same ranking as any search. The model runs once per
    degraded excerpt, not once per layer; each layer costs a reindex of the copy and one search
    per degraded excerpt.
    """
    rate = catalogs[0].encoder.sample_rate
    tallies = [_Tally(len(excerpts), k) for _ in catalogs]
    true_scores: list[float] = []
    clean_vectors: list[tuple[int, np.ndarray]] = []
    heard: list[tuple[str, Excerpt, Embedding]] = []
    clean_results: list[tuple[Excerpt, list[SearchResult]]] = []
    for name, excerpt, samples in degraded(excerpts, rate, rng):
        for which, catalog in enumerate(catalogs):
            embedding = catalog.embed((samples, rate), probe=True)  # as a search embeds a clip
            results = catalog.search_embedding(embedding, k=k)
            best = tallies[which].add(name, excerpt, results)
            if which == 0 and name == "clean":
                clean_results.append((excerpt, results))
                clean_vectors.append((excerpt.track_id, embedding.vector))
                if best is not None:
                    true_scores.append(best.score)
            if which == 0 and sweep is not None:
                heard.append((name, excerpt, embedding))
    found = Identification([tally.table() for tally in tallies], true_scores, clean_vectors)
    found.clean_results = clean_results
    if sweep is not None:
        found.layers, found.similarity_layers = [], []
        for position, layer in enumerate(sweep.manifest.encoder.kept_layers):
            sweep.reindex(layers=[layer])
            tally = _Tally(len(excerpts), k)
            clean = []
            for name, excerpt, embedding in heard:
                results = sweep.search_embedding(for_layers(embedding, [position]), k=k)
                tally.add(name, excerpt, results)
                if name == "clean":
                    clean.append((excerpt, results))
            found.layers.append({"layer": layer, "degradations": tally.table()})
            found.similarity_layers.append({"layer": layer, **similarity_figures(sweep, clean, k=k)})
    return found
