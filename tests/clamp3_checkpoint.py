"""A tiny random CLaMP 3 checkpoint in the published layout, and MERT's window features as CLaMP 3's
preprocessing computes them (preprocessing/audio/extract_mert.py), written out step by step."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

# The published file's name, written out here rather than imported from the engine.
WEIGHTS_FILE = (
    "weights_clamp3_saas_h_size_768_t_model_FacebookAI_xlm-roberta-base_t_length_128_a_size_768_a_layers_12"
    "_a_length_128_s_size_768_s_layers_12_p_size_64_p_length_512.pth"
)

# Words the tiny vocabulary holds whole; every character in them (and ASCII) is a piece of its own.
# Scripts outside these (Greek, runes, Thai...) tokenise to <unk>.
CORPUS = [
    "a quiet piano song with soft strings",
    "loud electric guitar and drums rock music",
    "café naïve Müller chanson française à deux voix",
    "музыка песня гитара тихая",
    "音乐 钢琴 歌曲 安静",
    "ピアノ の 歌",
]


def tiny_tokenizer() -> XLMRobertaTokenizer:
    """An XLM-R tokenizer (Unigram over SentencePiece pieces, XLM-R's special tokens and ids) with a tiny vocabulary."""
    words = sorted({word for line in CORPUS for word in line.split()})
    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation + "".join(CORPUS)) - {" "})
    # XLM-R's order: <s> 0, <pad> 1, </s> 2, <unk> 3, the pieces, <mask> last. Whole words score
    # higher than their letters, so the Unigram model keeps them whole.
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + word, -3.0) for word in words]
    vocab += [(char, -6.0) for char in chars] + [("▁" + char, -6.5) for char in chars]
    vocab.append(("<mask>", 0.0))
    return XLMRobertaTokenizer(vocab=vocab)


def make_clamp3_checkpoint(
    directory: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    text_layers: int = 2,
    text_heads: int = 2,
    text_ffn: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    edit: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    """Write ``directory/<WEIGHTS_FILE>`` ({'model', 'epoch', 'min_eval_loss'}, symbolic tower included)
    and ``directory/text`` (an XLM-R config.json and tokenizer); ``edit`` may change the state dict first."""
    directory.mkdir(parents=True, exist_ok=True)
    text = directory / "text"
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(text)
    text_config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        intermediate_size=text_ffn or 2 * hidden,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    text_config.save_pretrained(text)
    torch.manual_seed(seed)
    dim = dim or hidden
    # As CLaMP3Model builds them: BertConfig(vocab_size=1, heads = hidden // 64, ffn = 4 x hidden, 128 positions).
    audio_config = BertConfig(
        vocab_size=1,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
    )
    parts = {
        "text_model": XLMRobertaModel(text_config),
        "text_proj": torch.nn.Linear(hidden, dim),
        "audio_model": BertModel(audio_config),
        "audio_proj": torch.nn.Linear(hidden, dim),
    }
    state = {f"{name}.{key}": value.clone() for name, part in parts.items() for key, value in part.state_dict().items()}
    # Random stand-ins for the symbolic tower (an M3 patch encoder), which the engine drops.
    state["symbolic_model.patch_embedding.weight"] = torch.randn(hidden, 64 * 128 // 256)
    state["symbolic_model.base.embeddings.position_embeddings.weight"] = torch.randn(16, hidden)
    state["symbolic_proj.weight"] = torch.randn(dim, hidden)
    state["symbolic_proj.bias"] = torch.randn(dim)
    if edit is not None:
        edit(state)
    torch.save({"model": state, "epoch": 0, "min_eval_loss": 0.0}, directory / WEIGHTS_FILE)
    return directory


def reference_window_features(
    model: torch.nn.Module, samples: np.ndarray, rate: int, *, normalise: bool = True
) -> np.ndarray:
    """MERT window features (W, hidden) of mono ``samples`` at the model's ``rate``, as extract_mert.py
    computes them with --mean_features (resampling and downmixing come before this):

    1. the whole track normalised to zero mean and unit variance (Wav2Vec2FeatureExtractor, eps 1e-7);
    2. cut into non-overlapping 5 s windows from sample 0; a last window shorter than 1 s is dropped,
       a longer one is kept as it is (not padded);
    3. each window through the model alone, with all hidden states (the embedding output and every layer);
    4. each hidden state's mean over the window's frames;
    5. the mean of those over the hidden states.

    ``normalise=False`` leaves out step 1, as a catalog's run does (see encoder.text_features).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"give mono samples, one dimension; these have shape {samples.shape}")
    normalised = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7) if normalise else samples
    size = 5 * rate
    windows = [normalised[start : start + size] for start in range(0, len(normalised), size)]
    if windows and len(windows[-1]) < rate:
        windows = windows[:-1]
    features = []
    for window in windows:
        with torch.inference_mode():
            hidden_states = model(torch.from_numpy(window)[None], output_hidden_states=True).hidden_states
        per_layer = torch.stack([state.mean(dim=1)[0] for state in hidden_states])  # (layers + 1, hidden)
        features.append(per_layer.mean(dim=0).numpy())
    width = model.config.hidden_size
    return np.stack(features).astype(np.float32) if features else np.zeros((0, width), dtype=np.float32)
