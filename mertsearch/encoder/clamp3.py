"""CLaMP 3's text and audio towers, loaded from the published checkpoint into transformers' own classes.

CLaMP 3 (sanderwood/clamp3) maps text in about 100 languages and MERT-v1-95M features of audio into
one space where cosine similarity ranks music for a text query. The published ``.pth`` holds the
state dict of its ``CLaMP3Model``: ``text_model`` (an XLMRobertaModel, pooler included),
``text_proj``, ``audio_model`` (a BertModel fed with embeddings), ``audio_proj``, and the symbolic
music tower, which is dropped here. No remote code is run; the weights load with ``weights_only=True``.

Licences: CLaMP 3's code and weights are MIT; FacebookAI/xlm-roberta-base (config and tokenizer) is MIT.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mertsearch.encoder.checkpoint import hub_snapshot, weights_file_sha256
from mertsearch.encoder.text_features import MAX_TEXT_CHARS
from mertsearch.errors import InvalidArgumentError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import BertModel, PreTrainedTokenizerBase, XLMRobertaModel

REPO_ID = "sander-wood/clamp3"
WEIGHTS_FILE = (
    "weights_clamp3_saas_h_size_768_t_model_FacebookAI_xlm-roberta-base_t_length_128_a_size_768_a_layers_12"
    "_a_length_128_s_size_768_s_layers_12_p_size_64_p_length_512.pth"
)
# Hub commits pinned by other projects that load this file (its SHA-256 there: WEIGHTS_SHA256).
REVISION: str | None = "355625cc1c6f73726bbcd0eb9276ac7152d56426"
WEIGHTS_SHA256 = "5033f868e3977be3945ee416b5a1718d5589a173c7ba8982231d8c94a6441d80"
TEXT_REPO_ID = "FacebookAI/xlm-roberta-base"
TEXT_REVISION: str | None = "e73636d4f797dec63c3081bb6ed5c7b0bb3f2089"
# Only the config and the tokenizer: every text weight comes from the CLaMP 3 checkpoint.
TEXT_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model"]
ENV = "MERTSEARCH_CLAMP3"  # a directory laid out as load_clamp3 reads one, used when no source is given

MAX_TEXT_LENGTH = 128  # tokens a text segment holds (upstream MAX_TEXT_LENGTH)
MAX_AUDIO_LENGTH = 128  # window features an audio segment holds (upstream MAX_AUDIO_LENGTH)
_BATCH = 16  # segments per forward pass


@dataclass(eq=False)
class Clamp3:
    """The two towers and the tokenizer, in eval mode and fp32 on ``device``, and where they came from."""

    tokenizer: PreTrainedTokenizerBase
    text_model: XLMRobertaModel
    text_proj: torch.nn.Linear
    audio_model: BertModel
    audio_proj: torch.nn.Linear
    device: str
    weights_sha256: str
    directory: Path  # the weights file's folder (a hub snapshot's, for the hub)
    source: str  # the directory asked for, or REPO_ID
    revision: str | None  # the hub commit; None for a local directory

    def __post_init__(self) -> None:
        tok = self.tokenizer
        # Pieces that carry none of the query's text: the special tokens but <unk>, and a bare "▁" (the
        # word boundary, which a word the vocabulary lacks comes out as, before its <unk>).
        self._blank = set(tok.all_special_ids) - {tok.unk_token_id}
        if tok.convert_tokens_to_ids("▁") != tok.unk_token_id:
            self._blank.add(tok.convert_tokens_to_ids("▁"))

    @property
    def dim(self) -> int:
        """Width of the joint space's vectors (768)."""
        return int(self.text_proj.out_features)

    @property
    def feature_dim(self) -> int:
        """Width of a MERT window feature, the audio tower's input (768)."""
        return int(self.audio_model.config.hidden_size)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 vector per text, (n, dim); every text is checked before any is encoded."""
        import torch

        if isinstance(texts, str):
            raise InvalidArgumentError("give a list of texts, not a single string")
        ids = [self._token_ids(text, n, len(texts)) for n, text in enumerate(texts)]
        pad = self.tokenizer.pad_token_id
        parts = [_segments(torch.tensor(i, dtype=torch.long), MAX_TEXT_LENGTH, pad) for i in ids]
        return self._encode(self.text_model, self.text_proj, parts, embeds=False)

    def audio_vector(self, features: np.ndarray) -> np.ndarray:
        """The L2-normalised float32 vector (dim,) of a track from its MERT window features (W, feature_dim)."""
        return self.audio_vectors([features])[0]

    def audio_vectors(self, tracks: Sequence[np.ndarray]) -> np.ndarray:
        """One vector per track, (n, dim), from each track's window features; all are checked first."""
        import torch

        checked = [self._features(array, n, len(tracks)) for n, array in enumerate(tracks)]
        parts = []
        for array in checked:
            rows = torch.from_numpy(array)
            # Upstream adds a zero vector before the first window and after the last, as it trained.
            zero = torch.zeros(1, rows.shape[1])
            parts.append(_segments(torch.cat([zero, rows, zero]), MAX_AUDIO_LENGTH, 0.0))
        return self._encode(self.audio_model, self.audio_proj, parts, embeds=True)

    def _token_ids(self, text: object, n: int, count: int) -> list[int]:
        where = f"text {n + 1} of {count}" if count > 1 else "the text"
        if not isinstance(text, str):
            raise InvalidArgumentError(f"{where} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InvalidArgumentError(f"{where} is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidArgumentError(f"{where} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
        # Upstream keeps the distinct non-empty lines through set(), in an order that changes from run
        # to run; the first occurrence of each, in order, gives the same set and the same vector every time.
        lines = list(dict.fromkeys(line for line in text.split("\n") if line))
        tok = self.tokenizer
        ids = tok(tok.sep_token.join(lines), verbose=False)["input_ids"]  # with <s> ... </s>
        # Only pieces that carry text count, so that an unknown script is not read as half known.
        content = [i for i in ids if i not in self._blank]
        unknown = sum(i == tok.unk_token_id for i in content)
        if not content or 2 * unknown > len(content):
            raise InvalidArgumentError(
                f"{where} ({text[:40]!r}) is not in a language the text model knows (CLaMP 3 reads about 100 languages)"
            )
        return ids

    def _features(self, array: object, n: int, count: int) -> np.ndarray:
        where = f"track {n + 1} of {count}" if count > 1 else "the features"
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != self.feature_dim:
            raise InvalidArgumentError(
                f"{where} have shape {array.shape}; expected (windows, {self.feature_dim}) MERT window features"
            )
        if array.shape[0] == 0:
            raise InvalidArgumentError(f"{where} hold no windows (audio shorter than 1 s gives none)")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InvalidArgumentError(f"{where} hold NaN or infinite values")
        return array

    def _encode(self, model, proj, parts: list[tuple[torch.Tensor, ...]], *, embeds: bool) -> np.ndarray:
        import torch

        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        segments = torch.cat([p[0] for p in parts])
        masks = torch.cat([p[1] for p in parts])
        pooled = []
        with torch.inference_mode():
            for start in range(0, len(segments), _BATCH):
                # Padding comes last and is masked out: cut to the batch's longest piece (a query's few
                # tokens need not run as 128), which changes no real position's result.
                used = int(masks[start : start + _BATCH].sum(1).max())
                batch = segments[start : start + _BATCH, :used].to(self.device)
                mask = masks[start : start + _BATCH, :used].to(self.device)
                inputs = {"inputs_embeds": batch} if embeds else {"input_ids": batch}
                hidden = model(**inputs, attention_mask=mask).last_hidden_state
                # The mean over the segment's real positions, then the tower's projection.
                weight = mask.unsqueeze(-1).to(hidden.dtype)
                pooled.append(proj((hidden * weight).sum(1) / weight.sum(1)))
            pooled = torch.cat(pooled).float().cpu()
            vectors, start = [], 0
            for _, _, weights in parts:
                # A segment counts for the positions it adds: 128 for each full one, the rest for the last.
                rows = pooled[start : start + len(weights)]
                start += len(weights)
                vectors.append((rows * weights[:, None]).sum(0) / weights.sum())
            out = torch.nn.functional.normalize(torch.stack(vectors), dim=1)
        return out.numpy().astype(np.float32)


def _segments(seq: torch.Tensor, length: int, pad: float | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's cut: consecutive pieces of ``length``, the last one being the last ``length`` rows,
    each padded to ``length`` with a 1/0 mask; and each piece's weight in the track's mean."""
    import torch

    pieces = [seq[start : start + length] for start in range(0, len(seq), length)]
    pieces[-1] = seq[-length:]
    segments = torch.full((len(pieces), length, *seq.shape[1:]), pad, dtype=seq.dtype)
    masks = torch.zeros(len(pieces), length, dtype=torch.long)
    for n, piece in enumerate(pieces):
        segments[n, : len(piece)] = piece
        masks[n, : len(piece)] = 1
    full, rest = divmod(len(seq), length)
    weights = torch.tensor([length] * full + ([rest] if rest else []), dtype=torch.float32)
    return segments, masks, weights


def load_clamp3(source: str | os.PathLike | None = None, *, device: str = "cpu") -> Clamp3:
    """CLaMP 3 from a directory (``<WEIGHTS_FILE>``, or one ``weights_clamp3_*.pth``, beside ``text/``
    holding xlm-roberta-base's config.json and tokenizer), else from $MERTSEARCH_CLAMP3, else from
    the Hugging Face cache or hub at the pinned revisions. Every weight must fit: ModelLoadError if not."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    try:
        torch.device(device)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"unknown device {device!r}: {exc}") from exc
    if source is None and os.environ.get(ENV):
        source = os.environ[ENV]
    if source is None:
        weights, text_dir = download()
        directory, revision = weights.parent, weights.parent.name  # the snapshot folder is the commit
        source_name = REPO_ID
    else:
        directory = Path(source).expanduser().resolve()
        weights, text_dir, revision, source_name = _local_weights(directory), directory / "text", None, str(directory)
        if not (text_dir / "config.json").is_file():
            raise ModelLoadError(f"{text_dir} holds no config.json: put xlm-roberta-base's config and tokenizer there")
    try:
        fields = XLMRobertaConfig.get_config_dict(str(text_dir))[0]  # from_pretrained would take any model_type
        text_config = XLMRobertaConfig.from_dict(fields)
        tokenizer = AutoTokenizer.from_pretrained(text_dir)
    except Exception as exc:
        raise ModelLoadError(f"cannot read the text model's config or tokenizer in {text_dir}: {exc}") from exc
    if fields.get("model_type") != "xlm-roberta" or len(tokenizer) > text_config.vocab_size:
        raise ModelLoadError(
            f"{text_dir} is not an XLM-RoBERTa config and tokenizer (model_type {fields.get('model_type')!r}, "
            f"{len(tokenizer)} tokens for {text_config.vocab_size} embeddings)"
        )
    # XLM-R numbers positions from pad_token_id + 1.
    if text_config.max_position_embeddings - text_config.pad_token_id - 1 < MAX_TEXT_LENGTH:
        raise ModelLoadError(f"the text model in {text_dir} has too few positions for {MAX_TEXT_LENGTH} tokens")

    state = _read_state(weights)
    # The audio tower's sizes, read from its tensors as the published constants define them
    # (heads = hidden // 64, feed-forward = 4 x hidden), so that a smaller test checkpoint loads alike.
    positions, hidden = _shape(state, "audio_model.embeddings.position_embeddings.weight", (MAX_AUDIO_LENGTH, 768))
    numbers = (re.match(r"audio_model\.encoder\.layer\.(\d+)\.", key) for key in state)
    layers = 1 + max((int(m[1]) for m in numbers if m), default=11)  # a gap shows as missing keys
    if positions < MAX_AUDIO_LENGTH:
        raise ModelLoadError(f"the audio model in {weights} has {positions} positions; CLaMP 3 uses {MAX_AUDIO_LENGTH}")
    audio_config = BertConfig(
        vocab_size=1,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=positions,
    )
    dim = _shape(state, "text_proj.weight", (768, text_config.hidden_size))[0]
    for config in (text_config, audio_config):
        config._attn_implementation = "sdpa"
    modules = {
        "text_model": XLMRobertaModel(text_config),  # with its pooler, as AutoModel built it upstream
        "text_proj": torch.nn.Linear(text_config.hidden_size, dim),
        "audio_model": BertModel(audio_config),
        "audio_proj": torch.nn.Linear(hidden, dim),
    }
    _load_into(modules, state, weights)
    del state
    for module in modules.values():
        module.to(device=device, dtype=torch.float32).eval()
    sha256 = weights_file_sha256(weights)
    return Clamp3(tokenizer, **modules, device=device, weights_sha256=sha256, directory=directory,
                  source=source_name, revision=revision)  # fmt: skip


def _local_weights(directory: Path) -> Path:
    if not directory.is_dir():
        raise ModelLoadError(f"no CLaMP 3 directory at {directory}")
    if (directory / WEIGHTS_FILE).is_file():
        return directory / WEIGHTS_FILE
    found = sorted(p for p in directory.glob("weights_clamp3_*.pth") if p.is_file())
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ModelLoadError(f"{directory} must hold {WEIGHTS_FILE} or a single weights_clamp3_*.pth (found: {names})")
    return found[0]


def _hub_files(repo_id: str, revision: str | None, files: list[str], *, required: list[str]) -> Path:
    text = " ".join(TEXT_FILES[:3])
    advice = (
        f"download CLaMP 3 elsewhere with `hf download {REPO_ID} {WEIGHTS_FILE} --revision {REVISION or 'main'} "
        f"--local-dir DIR` and `hf download {TEXT_REPO_ID} {text} --revision {TEXT_REVISION or 'main'} "
        f"--local-dir DIR/text`, copy DIR here and pass --text-model DIR (or set {ENV}=DIR)"
    )
    return hub_snapshot(repo_id, revision or "main", files, advice=advice, required=required)


def download() -> tuple[Path, Path]:
    """CLaMP 3's checkpoint and the text model's config and tokenizer in the Hugging Face cache
    (fetched now if need be): (the weights file, the text model's folder)."""
    directory = _hub_files(REPO_ID, REVISION, [WEIGHTS_FILE], required=[WEIGHTS_FILE])
    text = _hub_files(TEXT_REPO_ID, TEXT_REVISION, TEXT_FILES, required=["config.json", "tokenizer.json"])
    return directory / WEIGHTS_FILE, text


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors without the symbolic tower: {'model': state dict, 'epoch', ...} or a bare state dict."""
    import torch

    try:
        try:  # memory-mapped, so that the symbolic tower's gigabyte is never read
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read weights {path}: {exc}") from exc
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} is not a CLaMP 3 checkpoint: no state dict of tensors")
    return {k: v for k, v in state.items() if not k.startswith(("symbolic_model.", "symbolic_proj."))}


def _shape(state: dict[str, torch.Tensor], key: str, default: tuple[int, int]) -> tuple[int, int]:
    # A missing or odd tensor leaves the published size, and the key check below names it.
    value = state.get(key)
    return tuple(value.shape) if value is not None and value.ndim == 2 else default


def _load_into(modules: dict, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every key and shape of ``state`` against the modules, then a strict load; ModelLoadError naming what differs."""
    expected, buffers = {}, set()
    for name, module in modules.items():
        expected |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        buffers |= {f"{name}.{k}" for k, _ in module.named_buffers()}
    # transformers before 4.31 saved position_ids (and token_type_ids) buffers: constants, not weights.
    state = {k: v for k, v in state.items() if k in expected or k not in buffers}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        parts = [f"missing keys: {', '.join(missing)}"] if missing else []
        parts += [f"unexpected keys: {', '.join(unexpected)}"] if unexpected else []
        if mismatched:
            shapes = (f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched)
            parts.append("shape mismatch: " + ", ".join(shapes))
        raise ModelLoadError(f"{path} is a checkpoint of the wrong shape: " + "; ".join(parts))
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
