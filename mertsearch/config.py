"""Settings that shape vectors, validated when they are made."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from mertsearch.errors import InvalidArgumentError

# hidden_states[7] of MERT-v1-95M: the layer MARBLE's genre probes use; a good general default.
DEFAULT_LAYER = 7

# The model's arithmetic: "auto" measures bf16 against fp32 on the machine (see MertEncoder).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The precision used where none is given (a server's, a cluster's, a test run's), else "auto".
PRECISION_ENV = "MERTSEARCH_PRECISION"


def check_precision(precision: str | None) -> str:
    """``precision`` checked; None means $MERTSEARCH_PRECISION when it is set and not empty, else "auto"."""
    given = "precision"
    if precision is None:
        precision, given = os.environ.get(PRECISION_ENV) or "auto", PRECISION_ENV
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"{given} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class WindowSettings:
    """How audio is cut into windows (see mertsearch.audio.windows for the rule)."""

    window_s: float = 5.0
    hop_s: float = 5.0
    min_tail_s: float = 1.0
    min_duration_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise InvalidArgumentError(f"window length must be > 0 s, got {self.window_s}")
        if not 0 < self.hop_s <= self.window_s:
            raise InvalidArgumentError(
                f"hop must be > 0 and at most the window length ({self.window_s:g} s), got {self.hop_s}"
            )
        if not 0.1 <= self.min_duration_s <= self.window_s:
            raise InvalidArgumentError(f"minimum duration must be 0.1 s .. window length, got {self.min_duration_s}")
        if not 0 <= self.min_tail_s <= self.window_s:
            raise InvalidArgumentError(f"minimum tail must be 0 .. window length, got {self.min_tail_s}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RaySettings:
    """Ingest on Ray (see mertsearch.indexer.distributed): ``address`` of a running cluster (None:
    Ray's own choice, RAY_ADDRESS or a local instance); ``actors`` embedding actors (default: one
    per GPU in the cluster, else one on CPUs)."""

    address: str | None = None
    actors: int | None = None

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise InvalidArgumentError(f"give at least one embedding actor, got {self.actors}")
