"""Find a checkpoint (local directory, hub cache or hub) and load it into transformers' own classes.

A MERT checkpoint on the hub is ``config.json`` (model_type "mert_model", with an ``auto_map`` to
remote code), ``pytorch_model.bin`` and ``preprocessor_config.json``. The remote ``MERTModel``
keeps HubertModel's module names, so its weights load into transformers' ``HubertModel``. Older
MERT checkpoints say model_type "hubert", and music2vec is a stock "data2vec-audio" model. No
remote code is ever run, and pickled weights load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np

from mertsearch import cache
from mertsearch.config import DEFAULT_LAYER
from mertsearch.encoder.registry import CONTEXT_S, SPECTRAL, lookup
from mertsearch.errors import ModelLoadError
from mertsearch.files import sha256_file

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_FILES = ["config.json", "preprocessor_config.json", *WEIGHT_FILES]

# MERT config fields that select code paths transformers' HubertModel does not have. The
# released checkpoints all leave them off; a checkpoint that turns one on is refused.
_UNSUPPORTED_IF_SET = {
    "feature_extractor_cqt": "the CQT feature branch",
    "deepnorm": "DeepNorm residual scaling",
}
_MERT_ONLY_FIELDS = {
    "feature_extractor_cqt",
    "feature_extractor_cqt_bins",
    "deepnorm",
    "attention_relax",
    "sample_rate",
    "auto_map",
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on local disk and where it came from."""

    directory: Path
    source: str  # what the user asked for: a registry name, a repo id or a directory
    repo_id: str | None
    revision: str | None

    @property
    def weights_path(self) -> Path:
        for name in WEIGHT_FILES:
            if (self.directory / name).is_file():
                return self.directory / name
        raise ModelLoadError(f"no weights in {self.directory}: expected one of {', '.join(WEIGHT_FILES)}")

    def config(self) -> dict:
        return _read_json(self.directory / "config.json", required=True)

    def preprocessor(self) -> dict:
        return _read_json(self.directory / "preprocessor_config.json", required=False)

    def num_layers(self) -> int:
        return int(self.config().get("num_hidden_layers", 0))

    def weights_sha256(self) -> str:
        if architecture(self.config()) == SPECTRAL:  # no weights: the recipe's settings identify it
            return sha256_file(self.directory / "config.json")
        return weights_file_sha256(self.weights_path)


# The Hugging Face cache stores an LFS file (weights are) as blobs/<its sha256>, linked from snapshots/.
_HUB_BLOB = re.compile(r"[0-9a-f]{64}")
WEIGHTS_CACHE = "weights-sha256.json"


def weights_file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, read once per version of the file rather than at every load.

    A hub cache blob is named by its hash; another file's hash is cached (see mertsearch.cache)
    under its resolved path with its size, inode and times, and computed again when any changes.
    """
    resolved = path.resolve()
    if resolved.parent.name == "blobs" and _HUB_BLOB.fullmatch(resolved.name):
        return resolved.name
    before = _stat_key(resolved)
    entry = cache.lookup(WEIGHTS_CACHE, str(resolved))
    if entry is not None and entry.get("stat") == before and _HUB_BLOB.fullmatch(str(entry.get("sha256"))):
        return entry["sha256"]
    digest = sha256_file(resolved)
    if _stat_key(resolved) == before:  # not kept if the file changed while it was read
        cache.store(WEIGHTS_CACHE, str(resolved), {"stat": before, "sha256": digest})
    return digest


def _stat_key(path: Path) -> list[int]:
    # ctime and inode too: a copy that keeps size and mtime (cp -p, rsync -t) still changes them.
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


@dataclass(frozen=True)
class Preprocessing:
    """What happens to samples before the model, from the checkpoint's preprocessor_config.json."""

    sample_rate: int
    do_normalize: bool

    def apply(self, batch: np.ndarray) -> np.ndarray:
        if not self.do_normalize:
            return batch
        # Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation, per window.
        mean = batch.mean(axis=1, keepdims=True)
        var = batch.var(axis=1, keepdims=True)
        return (batch - mean) / np.sqrt(var + 1e-7)


def read_preprocessing(checkpoint: Checkpoint) -> Preprocessing:
    config = checkpoint.config()
    pre = checkpoint.preprocessor()
    rate = pre.get("sampling_rate") or config.get("sample_rate")
    if not rate:
        raise ModelLoadError(f"{checkpoint.directory} gives no sample rate (preprocessor_config.json sampling_rate)")
    return Preprocessing(sample_rate=int(rate), do_normalize=bool(pre.get("do_normalize", False)))


def _read_json(path: Path, *, required: bool) -> dict:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path.name} not found in {path.parent}")
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def resolve_checkpoint(model: str, *, revision: str | None = None) -> Checkpoint:
    """Turn ``--model`` (a local directory, a registry name or a hub repo id) into files on disk.

    Hub models are fetched once, at a pinned revision, into the standard Hugging Face cache;
    a second call finds them there without the network.
    """
    if model == SPECTRAL:
        return Checkpoint(directory=BUILTIN / SPECTRAL, source=SPECTRAL, repo_id=None, revision=None)
    path = Path(model).expanduser()
    if path.is_dir():
        return Checkpoint(directory=path.resolve(), source=str(path.resolve()), repo_id=None, revision=None)
    info = lookup(model)
    if info is not None:
        repo_id, pinned = info.repo_id, revision or info.revision or "main"
    elif "/" in model and not model.startswith((".", "/", "~")) and model.count("/") == 1:
        repo_id, pinned = model, revision or "main"
    else:
        raise ModelLoadError(
            f"unknown model {model!r}: give a registry name (mert-v1-95m), a hub repo id "
            "(owner/name) or a local directory with config.json and the weights"
        )
    directory = _hub_snapshot(repo_id, pinned)
    # The snapshot folder is named after the commit, which pins even a branch name like "main".
    return Checkpoint(
        directory=directory, source=info.name if info else repo_id, repo_id=repo_id, revision=directory.name
    )


def _hub_snapshot(repo_id: str, revision: str) -> Path:
    advice = (
        f"download it elsewhere with `hf download {repo_id} --revision {revision} --local-dir DIR` "
        "(config.json, preprocessor_config.json and the weights), copy DIR here and pass --model DIR"
    )
    return hub_snapshot(repo_id, revision, HUB_FILES, advice=advice)


def hub_snapshot(repo_id: str, revision: str, files: list[str], *, advice: str, required: list[str] = ()) -> Path:
    """The hub snapshot of ``files`` of ``repo_id`` at ``revision``: from the Hugging Face cache
    when it holds them (and every one of ``required``), else downloaded there. ModelLoadError
    when neither works, with ``advice`` on what to do without network."""
    from huggingface_hub import constants, snapshot_download

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=files, local_files_only=True))
        if all((path / name).is_file() for name in required):
            return path
    except Exception:  # not in the cache yet: fetch it below
        pass
    try:
        # Fail at once when the hub's host cannot even be resolved, instead of after a minute of retries.
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=files))
    except Exception as exc:
        raise ModelLoadError(
            f"cannot get {repo_id} at revision {revision[:12]} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). Without network, {advice}"
        ) from exc


# model_type in config.json -> the architecture (and transformers class) the weights load into.
ARCHITECTURES = {"mert_model": "hubert", "hubert": "hubert", "data2vec-audio": "data2vec-audio", SPECTRAL: SPECTRAL}
# Encoders that ship with mertsearch, in the layout of a checkpoint (config.json, no weights).
BUILTIN = Path(__file__).parent / "builtin"


def architecture(config: dict) -> str:
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(
            f"config.json has model_type {model_type!r}; expected one of {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def model_config(config: dict) -> PretrainedConfig:
    """The transformers config (Hubert or Data2VecAudio) equivalent to a checkpoint's config.json."""
    from transformers import Data2VecAudioConfig, HubertConfig

    kind = architecture(config)
    for field, what in _UNSUPPORTED_IF_SET.items():
        if config.get(field):
            raise ModelLoadError(f"this checkpoint enables {what} ({field}=true), which mertsearch does not implement")
    fields = {k: v for k, v in config.items() if k not in _MERT_ONLY_FIELDS}
    if kind == "data2vec-audio":
        return Data2VecAudioConfig(**fields)
    # MERT's positional convolution uses weight norm, never batch norm.
    fields["conv_pos_batch_norm"] = False
    return HubertConfig(**fields)


def default_layer(checkpoint: Checkpoint) -> int:
    """The registry's layer for a known model, else layer 7 (or the last, for shallower models)."""
    info = lookup(checkpoint.repo_id) or lookup(checkpoint.source)
    return info.default_layer if info else min(DEFAULT_LAYER, checkpoint.num_layers())


def default_window_s(checkpoint: Checkpoint) -> float:
    """The model's pre-training context, the window length it should see."""
    info = lookup(checkpoint.repo_id) or lookup(checkpoint.source)
    return info.context_s if info else CONTEXT_S[architecture(checkpoint.config())]


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read weights {path}: {exc}") from exc


def _rename(key: str) -> str:
    # Checkpoints saved with torch's old weight_norm name the two halves weight_g / weight_v.
    if key.endswith(".weight_g"):
        return key[: -len("weight_g")] + "parametrizations.weight.original0"
    if key.endswith(".weight_v"):
        return key[: -len("weight_v")] + "parametrizations.weight.original1"
    return key


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Weights saved from a wrapper (MERT's base_model_prefix, or a head model) carry a prefix.
    for prefix in ("mert_model.", "hubert.", "data2vec_audio."):
        if state and all(key.startswith(prefix) for key in state):
            return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_model(checkpoint: Checkpoint) -> PreTrainedModel:
    """HubertModel or Data2VecAudioModel with the checkpoint's weights, in eval mode; every weight must match."""
    from transformers import Data2VecAudioModel, HubertModel

    config = model_config(checkpoint.config())
    config._attn_implementation = "sdpa"
    model_class = Data2VecAudioModel if architecture(checkpoint.config()) == "data2vec-audio" else HubertModel
    model = model_class(config)
    state = _strip_prefix({_rename(k): v for k, v in _load_state_dict(checkpoint.weights_path).items()})
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            parts.append(
                "shape mismatch: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched)
            )
        raise ModelLoadError(f"weights in {checkpoint.weights_path} do not fit the config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()
