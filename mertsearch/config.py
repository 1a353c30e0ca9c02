"""Settings that shape vectors, validated when they are made."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

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
    # Embed only this much of each track: windows spread evenly over it (None: all of it).
    sample_s: float | None = None

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
        if self.sample_s is not None:  # seconds, as the manifest records them whatever was given
            object.__setattr__(self, "sample_s", float(self.sample_s))
        if self.sample_s is not None and not self.sample_s >= self.window_s:
            raise InvalidArgumentError(
                f"a sample must hold at least one window ({self.window_s:g} s), got {self.sample_s:g} s"
            )

    @property
    def sampled_windows(self) -> int:
        """How many windows a sampled track gets (0: tracks are not sampled)."""
        return 0 if self.sample_s is None else max(1, round(self.sample_s / self.window_s))

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


# The manifest (manifest.json, see mertsearch.storage.manifest): everything that shapes a catalog's
# vectors, typed. The sections change only through a writer's reindex (layers, transform) or
# rebuild (the index kind).


@dataclass
class EncoderSpec:
    """The model, by where it came from and the hash of its weights, and the layers stored."""

    source: str  # a registry name, hub repo id or directory, as given
    repo_id: str | None
    revision: str | None  # the hub commit, when the model came from the hub
    weights_sha256: str
    architecture: str
    sample_rate: int
    do_normalize: bool
    layers: list[int]  # the hidden states searched (the mean of their vectors when several)
    num_layers: int
    dim: int
    kept_layers: list[int] = field(default_factory=list)  # every layer's vectors are stored too


@dataclass
class IndexSpec:
    factory: str = "auto"  # "auto" (by size) or a FAISS factory string
    metric: str = "inner_product"
    vectors: str = "tracks and windows"
    # Where the vectors are searched: None for FAISS files in the catalog, or a Milvus URL without
    # secrets (storage/vector_store.py); ``collections`` is the prefix of its two collections' names.
    vector_store: str | None = None
    collections: str | None = None


@dataclass
class TransformSpec:
    """The centering or whitening applied to every vector before it is indexed or searched."""

    kind: str = "none"  # "none", "center" or "whiten"
    file: str | None = None  # in the catalog's directory
    fitted_on_tracks: int = 0


@dataclass
class TextSpec:
    """Text search: the CLaMP 3 checkpoint whose audio tower made the text vectors."""

    source: str  # "clamp3" (the hub's, at the pinned revision) or a directory, as given
    revision: str | None
    weights_sha256: str
    dim: int


POOLING = {
    "window": "mean over frames of each layer, L2-normalised; several layers: their mean, L2-normalised",
    "track": "mean of window vectors, L2-normalised",
}
FORMAT = 1


@dataclass
class Manifest:
    encoder: EncoderSpec
    windows: WindowSettings
    index: IndexSpec = field(default_factory=IndexSpec)
    transform: TransformSpec = field(default_factory=TransformSpec)
    pooling: dict = field(default_factory=lambda: dict(POOLING))
    format: int = FORMAT
    created_by: str | None = None
    created_at: str | None = None
    database: str | None = None  # a server database's URL without its password; None: SQLite inside
    text: TextSpec | None = None  # text search, where the catalog has it
    # What another version of mertsearch wrote that this one does not know, written back unchanged.
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        data = dict(data)
        extra: dict = {}
        encoder = dict(data.pop("encoder"))
        if "layer" in encoder and "layers" not in encoder:  # catalogs from before layer sets
            encoder["layers"] = [encoder.pop("layer")]
        sections = {}
        for name, kind in (
            ("encoder", EncoderSpec),
            ("windows", WindowSettings),
            ("index", IndexSpec),
            ("transform", TransformSpec),
        ):
            values = encoder if name == "encoder" else dict(data.pop(name, {}))
            known = {f.name for f in fields(kind)}
            sections[name] = kind(**{k: v for k, v in values.items() if k in known})
            if unknown := {k: v for k, v in values.items() if k not in known}:
                extra[name] = unknown
        if isinstance(data.get("text"), dict):
            data["text"] = TextSpec(**data["text"])
        known = {f.name for f in fields(cls)} - {"extra"}
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**sections, **{k: v for k, v in data.items() if k in known}, extra=extra)

    def to_dict(self) -> dict:
        """The JSON document, as manifest.json holds it."""
        out = {name: value for name, value in asdict(self).items() if name != "extra"}
        for key in ("database", "text"):  # as catalogs without them have it
            if out[key] is None:
                del out[key]
        for key in ("vector_store", "collections"):  # as catalogs on FAISS files have it
            if out["index"][key] is None:
                del out["index"][key]
        if out["windows"]["sample_s"] is None:  # as catalogs made before sampling have it
            del out["windows"]["sample_s"]
        for name, values in self.extra.items():
            out[name] = {**out[name], **values} if isinstance(out.get(name), dict) else values
        return out
