"""What the tests share: tiny checkpoints in the hub's on-disk layout, generated audio, MERT's published
recipe as a reference, the check that a catalog's database and index agree, and the command line
run at a terminal or piped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from transformers import Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel

# The rate the generated test tracks are written at.
SAMPLE_RATE = 44100

# The fields of m-a-p/MERT-v1-95M's config.json, shrunk where they set the size.
TINY_MERT_CONFIG = {
    "_name_or_path": "m-a-p/MERT-v1-95M",
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.1,
    "attention_relax": -1.0,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [16, 16, 16, 16, 16, 16, 16],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.0,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 5,
    "mask_time_min_masks": 2,
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "num_attention_heads": 4,
    "num_conv_pos_embedding_groups": 4,
    "num_conv_pos_embeddings": 16,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 4,
    "pad_token_id": 0,
    "sample_rate": 24000,
    "torch_dtype": "float32",
    "transformers_version": "4.25.1",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}

PREPROCESSOR = {
    "do_normalize": False,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0,
    "return_attention_mask": True,
    "sampling_rate": 24000,
}


# MERT-v0 as published in the HubertModel form: a stock Hubert config at 16 kHz.
_MERT_ONLY = {
    "attention_relax",
    "auto_map",
    "deepnorm",
    "feature_extractor_cqt",
    "feature_extractor_cqt_bins",
    "sample_rate",
}
TINY_HUBERT_V0_CONFIG = {k: v for k, v in TINY_MERT_CONFIG.items() if k not in _MERT_ONLY} | {
    "model_type": "hubert",
    "architectures": ["HubertModel"],
    "_name_or_path": "m-a-p/MERT-v0",
}

# music2vec-v1: a stock Data2VecAudioModel (layer-normalised convolutions, 5 positional conv layers), 16 kHz.
TINY_DATA2VEC_CONFIG = {
    "_name_or_path": "m-a-p/music2vec-v1",
    "architectures": ["Data2VecAudioModel"],
    "model_type": "data2vec-audio",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 4,
    "conv_dim": [16, 16, 16, 16, 16, 16, 16],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": True,
    "feat_extract_activation": "gelu",
    "hidden_act": "gelu",
    "num_conv_pos_embeddings": 5,
    "conv_pos_kernel_size": 19,
    "num_conv_pos_embedding_groups": 4,
    "layer_norm_eps": 1e-05,
    "mask_time_prob": 0.05,
    "vocab_size": 32,
}

# Wider than TINY (but still small and fast): random features that tell tunes and positions
# apart, for tests of retrieval itself rather than of loading.
DISCERNING = {
    "conv_dim": [128] * 7,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_conv_pos_embedding_groups": 4,
    "num_hidden_layers": 2,
}

CONFIGS = {"mert": TINY_MERT_CONFIG, "hubert-v0": TINY_HUBERT_V0_CONFIG, "data2vec": TINY_DATA2VEC_CONFIG}


def reference_model(config: dict) -> HubertModel | Data2VecAudioModel:
    """The transformers model a test builds by hand, independently of the engine's conversion."""
    drop = _MERT_ONLY | {"model_type", "architectures", "torch_dtype", "transformers_version"}
    fields = {k: v for k, v in config.items() if k not in drop}
    if config["model_type"] == "data2vec-audio":
        return Data2VecAudioModel(Data2VecAudioConfig(**fields))
    return HubertModel(HubertConfig(conv_pos_batch_norm=False, **fields))


def write_tiny_mert(
    directory: Path,
    *,
    kind: str = "mert",
    seed: int = 0,
    overrides: dict | None = None,
    preprocessor: dict | None = None,
    safetensors: bool = False,
) -> tuple[Path, HubertModel]:
    """Write a random tiny checkpoint of ``kind`` (see CONFIGS) in the hub layout; return it and the reference model."""
    config = {**CONFIGS[kind], **(overrides or {})}
    torch.manual_seed(seed)
    model = reference_model(config).eval()
    state = {}
    for key, value in model.state_dict().items():
        # The hub's pytorch_model.bin was saved with torch's old weight_norm names.
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        state[key] = value.clone()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    rate = {"sampling_rate": 24000 if kind == "mert" else 16000}
    (directory / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR, **rate, **(preprocessor or {})}))
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(directory / "model.safetensors"))
    else:
        torch.save(state, directory / "pytorch_model.bin")
    return directory, model


def tone_track(seed: int, seconds: float, sample_rate: int = 44100, channels: int = 2) -> np.ndarray:
    """A distinct little piece: a chord of seeded pitches with a rhythm and some noise, (channels, n)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freqs = rng.uniform(110, 880, size=3)
    beat = rng.uniform(1.0, 4.0)
    signal = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in freqs) / 3
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * beat * t) ** 2
    noise = rng.normal(0, rng.uniform(0.01, 0.2), size=t.shape)
    mono = 0.5 * (signal * envelope + noise)
    out = np.stack([mono * (0.8 + 0.2 * c) for c in range(channels)]).astype(np.float32)
    return np.clip(out, -1, 1)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Encode ``samples`` (channels, n) with FFmpeg in the format the file name asks for."""
    from torchcodec.encoders import AudioEncoder

    path.parent.mkdir(parents=True, exist_ok=True)
    AudioEncoder(torch.from_numpy(np.ascontiguousarray(samples)), sample_rate=sample_rate).to_file(str(path))
    return path


def melody_track(seed: int, seconds: float, sample_rate: int = 44100) -> np.ndarray:
    """A tune that changes all the time: notes of seeded pitch, length and loudness, (1, n).

    Unlike tone_track, no two stretches of it sound alike, so a window's position can be told.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sample_rate), dtype=np.float64)
    position = 0
    while position < len(out):
        length = int(rng.uniform(0.15, 0.6) * sample_rate)
        t = np.arange(min(length, len(out) - position)) / sample_rate
        pitch = 55 * 2 ** rng.uniform(0, 5)
        note = sum(rng.uniform(0.2, 1) / h * np.sin(2 * np.pi * pitch * h * t) for h in range(1, 5))
        out[position : position + len(t)] = rng.uniform(0.1, 0.5) * note * np.exp(-t * rng.uniform(1, 8))
        position += len(t)
    return np.clip(out + rng.normal(0, 0.003, len(out)), -1, 1)[None].astype(np.float32)


def song_track(seed: int, seconds: float, sample_rate: int = 44100) -> np.ndarray:
    """A piece built like most recorded music, (2, n): a seeded tempo and key, chords a bar each
    (a progression of four, another every eight bars), a bass on the beat, a melody of the key's
    notes on eighths, kick, snare and hi-hat, all with harmonics and decaying notes. Two seeds
    give distinct pieces; within one, bars resemble each other as a song's do."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n)
    beat = 60 / rng.uniform(80, 140)
    root = 45 + int(rng.integers(0, 12))  # MIDI note of the key
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    brightness = rng.uniform(0.3, 0.9)  # how strong the upper harmonics are: the timbre

    def add(start: float, length: float, midi: float, level: float, decay: float) -> None:
        first = int(start * sample_rate)
        t = np.arange(min(int(length * sample_rate), n - first)) / sample_rate
        if len(t) <= 0:
            return
        pitch = 440 * 2 ** ((midi - 69) / 12)
        tone = sum(brightness ** (h - 1) / h * np.sin(2 * np.pi * pitch * h * t) for h in range(1, 6))
        out[first : first + len(t)] += level * tone * np.exp(-t * decay) * np.minimum(1, t * 200)

    def drum(start: float, length: float, level: float, cutoff: float, tone: float = 0.0) -> None:
        first = int(start * sample_rate)
        t = np.arange(min(int(length * sample_rate), n - first)) / sample_rate
        noise = rng.normal(0, 1, len(t))
        if cutoff < 1:  # a crude high-pass: the difference of neighbouring samples
            noise = np.diff(noise, prepend=0) * cutoff
        body = np.sin(2 * np.pi * tone * t * np.exp(-t * 20)) if tone else 0
        out[first : first + len(t)] += level * (noise + 3 * body) * np.exp(-t * 30)

    bar, time_ = 4 * beat, 0.0
    while time_ < seconds:
        progression = rng.choice([0, 3, 4, 5, 1], size=4)  # scale degrees of the chords
        motif = rng.integers(0, 7, size=8)  # a bar of the melody, varied from bar to bar
        for number in range(8):
            degree = progression[number % 4]
            chord = [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
            for note in chord:
                add(time_, bar, note, 0.08, 0.8)
            for b in range(4):
                add(time_ + b * beat, beat, chord[0] - 12, 0.15, 4)
                drum(time_ + b * beat, 0.3, 0.25 if b % 2 == 0 else 0.12, 1.0, tone=60 if b % 2 == 0 else 0)
            for eighth in range(8):
                drum(time_ + eighth * beat / 2, 0.05, 0.04, 0.3)
                if rng.random() < 0.7:
                    step = (motif[eighth] + (rng.integers(-1, 2) if rng.random() < 0.3 else 0)) % 7
                    add(time_ + eighth * beat / 2, beat / 2, root + 12 + scale[step], 0.12, 6)
            time_ += bar
    out = out / (np.abs(out).max() + 1e-9) * 0.7
    return np.stack([out, 0.9 * out + rng.normal(0, 0.002, n)]).astype(np.float32)


def recipe_track_vector(path: Path, model, extractor, layer: int) -> np.ndarray:
    """MERT's published recipe, file by file: load, resample with T.Resample, the processor, the model
    with all hidden states, one 5 s window at a time; the track vector is the mean of the windows'
    normalised layer means (a short tail is dropped, a long one gets a window ending at the end)."""
    import torchaudio

    waveform, rate = torchaudio.load(str(path))
    audio = torchaudio.transforms.Resample(rate, 24000)(waveform.mean(dim=0)).numpy()
    window = 5 * 24000
    starts = list(range(0, len(audio) - window + 1, window))
    if len(audio) - (starts[-1] + window) >= 24000:
        starts.append(len(audio) - window)
    vectors = []
    for start in starts:
        inputs = extractor(audio[start : start + window], sampling_rate=24000, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[layer]
        mean = hidden.mean(dim=1)[0].numpy()
        vectors.append(mean / np.linalg.norm(mean))
    track = np.mean(vectors, axis=0)
    return track / np.linalg.norm(track)


def assert_consistent(cat, expected_tracks: int) -> None:
    """Every file once, and the FAISS indexes hold exactly the database's tracks and windows."""
    from sqlalchemy import func, select

    from mertsearch.storage.schema import Track

    with cat.store.session() as session:
        paths = session.scalars(select(Track.path)).all()
        assert len(paths) == len(set(paths)) == expected_tracks
        assert session.scalar(select(func.count(Track.id))) == expected_tracks
    stored = sorted(int(i) for batch, _ in cat.store.track_vectors() for i in batch)
    assert sorted(int(i) for i in cat.index.ids()) == stored
    windows = sorted(int(i) for batch, _ in cat.store.window_vectors() for i in batch)
    assert sorted(int(i) for i in cat.indexes.windows.ids()) == windows
    assert len(windows) == cat.store.counts()["windows"]


def synthetic_track(
    n: int,
    windows: np.ndarray,
    *,
    hop: float = 5.0,
    window_s: float = 5.0,
    path: str | None = None,
    tags: dict | None = None,
):
    """What an ingest would store for file ``n`` whose windows embed to ``windows`` (unit vectors):
    a catalog of any size without audio or a model."""
    from mertsearch.storage.store import TrackRecord

    starts = np.arange(len(windows)) * hop
    mean = windows.mean(axis=0)
    return TrackRecord(
        path=path or f"/synthetic/{n:05d}.flac",
        size=1,
        mtime_ns=1,
        sha256=f"{n:064x}",
        duration=float(starts[-1] + window_s),
        tags=tags or {},
        vector=(mean / np.linalg.norm(mean)).astype(np.float32),
        window_starts=starts,
        window_ends=starts + window_s,
        window_vectors=windows,
    )


# rich's escape codes (bold headers), left out where a test reads a terminal's text.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli(*args, code: int = 0, columns: int = 80, terminal: bool = False):
    """The command line, as at a terminal ``columns`` wide (``terminal``) or piped (CliRunner's
    output is no terminal; TTY_COMPATIBLE says so outright, whatever FORCE_COLOR is)."""
    from typer.testing import CliRunner

    from mertsearch.cli import app

    env = {"COLUMNS": str(columns), "TTY_COMPATIBLE": "1" if terminal else "0"}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == code, result.output
    return result


def screen(*args, columns: int = 80) -> list[str]:
    """The lines a terminal ``columns`` wide shows for a command, escape codes left out."""
    return ANSI.sub("", cli(*args, columns=columns, terminal=True).stdout).splitlines()
