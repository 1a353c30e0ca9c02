"""Excerpt identification: can the catalog find where a (degraded) piece of one of its tracks comes from?

Random excerpts of catalog tracks, starting off the window grid, are played to the search as
they are and after each degradation a listener's copy may have suffered; the report gives the
recall of the source track at 1 and 10, and how far the reported position is from the truth.
Everything is drawn from one seed, so two runs on the same catalog give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mertsearch.catalog import Catalog

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
        import torch
        from torchcodec.encoders import AudioEncoder

        from mertsearch.audio.decode import decode_audio

        encoded = AudioEncoder(torch.from_numpy(samples[None]), sample_rate=rate).to_tensor(
            format="mp3", bit_rate=bit_rate
        )
        return decode_audio(encoded.numpy().tobytes(), sample_rate=rate)

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


def draw_excerpts(catalog: Catalog, *, count: int, seconds: float, rng: np.random.Generator) -> list[Excerpt]:
    """Up to ``count`` excerpts of distinct tracks long enough, each starting off the window grid."""
    from mertsearch.audio.decode import decode_audio

    rate = catalog.encoder.sample_rate
    hop = catalog.windows.hop_s
    candidates = [
        (track_id, path, duration)
        for track_id, path, duration in catalog.store.durations()
        if duration >= seconds + hop
    ]
    chosen = rng.permutation(len(candidates))[:count]
    excerpts = []
    for index in chosen:
        track_id, path, duration = candidates[index]
        # A window-grid position plus a fraction of a hop, so the excerpt never lines up with stored windows.
        slot = int(rng.integers(0, int((duration - seconds) // hop) + 1))
        start = min(slot * hop + float(rng.uniform(0.2, 0.8)) * hop, duration - seconds)
        samples = decode_audio(path, sample_rate=rate, start=start, end=start + seconds)
        excerpts.append(Excerpt(track_id, path, round(start, 3), samples))
    return excerpts


def degraded(excerpts: list[Excerpt], rate: int, rng: np.random.Generator) -> Iterator[tuple[str, Excerpt, np.ndarray]]:
    """(degradation, excerpt, samples) for every excerpt under every degradation, always in the same
    order, so one seed gives every listener (catalogs, bench/musly.py) the very same sounds."""
    for name, degrade in DEGRADATIONS.items():
        for number, excerpt in enumerate(excerpts):
            other = excerpts[(number + 1) % len(excerpts)].samples
            yield name, excerpt, degrade(excerpt.samples, rate, rng, other).astype(np.float32)


def identify(
    catalogs: list[Catalog], excerpts: list[Excerpt], rng: np.random.Generator, *, k: int = 10
) -> tuple[list[dict], list[float]]:
    """Recall@1, recall@k and position error of the source file, per degradation, for each catalog
    (all holding the same files: every catalog hears the very same degraded excerpt); and the
    scores of the first catalog's true matches on clean excerpts."""
    rate = catalogs[0].encoder.sample_rate
    hits1 = [dict.fromkeys(DEGRADATIONS, 0) for _ in catalogs]
    hitsk = [dict.fromkeys(DEGRADATIONS, 0) for _ in catalogs]
    errors: list[dict[str, list[float]]] = [{name: [] for name in DEGRADATIONS} for _ in catalogs]
    true_scores = []
    for name, excerpt, samples in degraded(excerpts, rate, rng):
        for which, catalog in enumerate(catalogs):
            results = catalog.search((samples, rate), k=k)
            ranks = [rank for rank, r in enumerate(results) if excerpt.path in (r.path, *r.alternates)]
            if ranks and ranks[0] == 0:
                hits1[which][name] += 1
                best = results[0]
                errors[which][name].append(abs((best.match.start - best.query.start) - excerpt.start))
                if name == "clean" and which == 0:
                    true_scores.append(best.score)
            hitsk[which][name] += bool(ranks)
    tables = [
        {
            name: {
                "recall_at_1": round(hits1[which][name] / len(excerpts), 4),
                f"recall_at_{k}": round(hitsk[which][name] / len(excerpts), 4),
                "median_position_error_s": (
                    round(float(np.median(errors[which][name])), 3) if errors[which][name] else None
                ),
            }
            for name in DEGRADATIONS
        }
        for which in range(len(catalogs))
    ]
    return tables, true_scores
