"""CPU runtimes for MERT on the same windows in one run: transformers' model as published, the
engine (fp32, bf16: its convolutions as matrix products), torch.compile, torch's int8 dynamic
quantisation, ONNX Runtime and OpenVINO.

Full-size MERT-v1-95M and -330M with random weights (the compute is the real one), each cut after the
layer searched, as the engine cuts it: --layer for 95M and twice that for 330M (24 layers against
12, so the same relative depth). One 5 s window at a time at 24 kHz, the engine's CPU batch. Each
row: seconds per window (best of --repeats after a warm-up pass), times real time, speedup against
"transformers fp32" (HubertModel with its own convolutions, in fp32: the reference, always run),
and the lowest cosine of its window vectors (layer L, mean over frames) against the reference's.
compile, int8, ONNX Runtime and OpenVINO take the reference model (transformers' convolutions). A
runtime that cannot export or run gets a row with its error and the others still run. ONNX Runtime
and OpenVINO come from the "runtimes" extra (pip install -e ".[runtimes]").

    .venv/bin/python bench/runtimes.py [--model 95m,330m] [--layer 7] [--windows 6] [--repeats 3]
        [--only "engine bf16,openvino bf16"] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.encoder import MERT_V1_95M, MERT_V1_330M  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from mertsearch.encoder.checkpoint import resolve_checkpoint  # noqa: E402
from mertsearch.encoder.mert import MertEncoder  # noqa: E402
from tests.helpers import melody_track, tone_track, write_tiny_mert  # noqa: E402

SIZES = {"95m": (MERT_V1_95M, 1), "330m": (MERT_V1_330M, 2)}  # config, layer scale
RATE, WINDOW_S = 24000, 5.0


class Unavailable(Exception):
    """A runtime this machine or library version does not offer."""


class Pooled(nn.Module):
    """The truncated model followed by the mean over frames, so that every runtime returns window vectors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model(audio).last_hidden_state.mean(dim=1)


class Setup:
    """What the runtimes share for one model: the checkpoint, the model with transformers' own
    convolutions (what the other runtimes export or compile), one example window and the ONNX file."""

    def __init__(self, checkpoint, layer: int, example: np.ndarray, workdir: Path) -> None:
        self.checkpoint, self.layer, self.example, self.workdir = checkpoint, layer, example, workdir
        # Cut at the layer like the engine's, but with transformers' feature encoder: the published model.
        with mock.patch("mertsearch.encoder.mert.use_matmul_front_end", lambda model: False):
            self.encoder = MertEncoder(checkpoint, layer, batch_size=1, precision="fp32")
        self.threads = torch.get_num_threads()
        self.notes: list[str] = []
        self._onnx: Path | Exception | None = None

    def onnx(self) -> Path:
        """The model exported once; ONNX Runtime and OpenVINO read the same file."""
        if self._onnx is None:
            path = self.workdir / "model.onnx"
            try:
                # The exporter reports its progress on stdout, which --json keeps for the result.
                with contextlib.redirect_stdout(sys.stderr), torch.no_grad():
                    torch.onnx.export(
                        Pooled(self.encoder.model),
                        (torch.from_numpy(self.example),),
                        str(path),
                        input_names=["audio"],
                        output_names=["vector"],
                    )
                self._onnx = path
            except Exception as exc:
                self._onnx = exc
        if isinstance(self._onnx, Exception):
            raise RuntimeError(f"ONNX export failed: {one_line(self._onnx)}")
        return self._onnx


def per_window(run_one):
    """Runs ``run_one`` ((1, samples) window in, (1, dim) vector out) over the windows one at a time."""
    return lambda windows: np.concatenate([np.asarray(run_one(w[None]), dtype=np.float32) for w in windows])


def torch_run(module: nn.Module, bf16: bool):
    @torch.inference_mode()
    def run_one(window: np.ndarray) -> np.ndarray:
        # Autocast as the engine uses it: matrix products in bf16, norms and softmax in fp32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return module(torch.from_numpy(window)).float().numpy()

    return per_window(run_one)


def transformers_fp32(s: Setup):
    return lambda windows: s.encoder.embed_windows(windows)[:, 0]


def engine(precision: str):
    def setup(s: Setup):
        encoder = MertEncoder(s.checkpoint, s.layer, batch_size=1, precision=precision)
        return lambda windows: encoder.embed_windows(windows)[:, 0]

    return setup


def compiled(bf16: bool):
    return lambda s: torch_run(torch.compile(Pooled(s.encoder.model)), bf16)


def torch_int8(s: Setup):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as exc:
            raise Unavailable(f"no torch.ao.quantization.quantize_dynamic in torch {torch.__version__}") from exc
        # Not in place: the engine's fp32 model stays as it is for the other rows.
        model = quantize_dynamic(Pooled(s.encoder.model), {nn.Linear}, dtype=torch.qint8)
    if any("deprecated" in str(w.message) for w in caught):
        s.notes.append(f"torch.ao.quantization is deprecated in torch {torch.__version__}")
    return torch_run(model, bf16=False)


def onnxruntime_run(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return per_window(lambda window: session.run(None, {name: window})[0])


def onnxruntime_fp32(s: Setup):
    return onnxruntime_run(s.onnx(), s.threads)


def onnxruntime_int8(s: Setup):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = s.workdir / "model-int8.onnx"
    # Matrix products only, as torch's row quantises only nn.Linear: ORT's int8 Conv (ConvInteger)
    # ran slower than its fp32 Conv in trials and would hide what int8 does for the transformer.
    quantize_dynamic(s.onnx(), path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    return onnxruntime_run(path, s.threads)


def openvino(precision: str):
    def setup(s: Setup):
        import openvino as ov

        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in capabilities:
            raise Unavailable("OpenVINO offers no bf16 on this CPU")
        # OpenVINO picks bf16 by itself where the CPU has it; fp32 has to be asked for.
        default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
        s.notes.append(f"OpenVINO's default precision on this CPU: {default}")
        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": s.threads}
        # LATENCY: one stream for one window at a time, as the other runtimes run.
        config["PERFORMANCE_HINT"] = "LATENCY"
        request = core.compile_model(core.read_model(str(s.onnx())), "CPU", config).create_infer_request()
        # The request reuses its output buffer: copy it out.
        return per_window(lambda window: np.array(request.infer({0: window})[0]))

    return setup


RUNTIMES = {
    "transformers fp32": transformers_fp32,
    "engine fp32": engine("fp32"),
    "engine bf16": engine("bf16"),
    "torch.compile fp32": compiled(bf16=False),
    "torch.compile bf16": compiled(bf16=True),
    "torch int8 dynamic": torch_int8,
    "onnxruntime fp32": onnxruntime_fp32,
    "onnxruntime int8": onnxruntime_int8,
    "openvino fp32": openvino("f32"),
    "openvino bf16": openvino("bf16"),
}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def timed(run, windows: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Best seconds per window over ``repeats`` passes, after one pass that compiles and warms caches."""
    vectors = run(windows)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(windows)
        best = min(best, time.perf_counter() - started)
    return best / len(windows), vectors


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


def bench_model(name: str, layer: int, windows: np.ndarray, only: list[str], repeats: int) -> list[dict]:
    config, scale = SIZES[name]
    layer = min(layer * scale, config["num_hidden_layers"])
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        directory, _ = write_tiny_mert(Path(tmp) / f"mert-v1-{name}-random", overrides=config)
        checkpoint = resolve_checkpoint(str(directory))
        setup = Setup(checkpoint, layer, np.zeros((1, 1), np.float32), Path(tmp))
        inputs = setup.encoder.preprocessing.apply(windows)
        setup.example = inputs[:1]
        for runtime in ["transformers fp32", *(r for r in RUNTIMES if r in only and r != "transformers fp32")]:
            row = {"model": name, "layer": layer, "runtime": runtime}
            setup.notes = []
            try:
                run = RUNTIMES[runtime](setup)
                # The engine preprocesses by itself; the others get what it would feed the model.
                engine_side = runtime.startswith(("engine", "transformers"))
                seconds, vectors = timed(run, windows if engine_side else inputs, repeats)
                if runtime == "transformers fp32":
                    reference = (seconds, vectors)
                row |= {"s_per_window": round(seconds, 4), "x_realtime": round(WINDOW_S / seconds, 2)}
                if reference is not None:
                    row["speedup"] = round(reference[0] / seconds, 3)
                    row["min_cosine"] = round(min_cosine(vectors, reference[1]), 6)
            except Exception as exc:
                row["error"] = one_line(exc)
            if setup.notes:
                row["note"] = "; ".join(setup.notes)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            run = None
            torch._dynamo.reset()  # drop compiled graphs before the next runtime
            gc.collect()
    return rows


def versions() -> dict:
    out = {"torch": torch.__version__}
    for package in ("onnxruntime", "openvino", "onnx"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="95m,330m", help="comma-separated: 95m, 330m")
    parser.add_argument("--layer", type=int, default=7, help="for 95M; 330M runs to twice this layer")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(RUNTIMES), help="comma-separated runtime names")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models, only = args.model.split(","), [r.strip() for r in args.only.split(",")]
    for bad in [m for m in models if m not in SIZES] + [r for r in only if r not in RUNTIMES]:
        parser.error(f"unknown model or runtime {bad!r}; runtimes: {', '.join(RUNTIMES)}")

    # Tones and melodies in turn, so that windows differ in how much they change.
    windows = np.stack(
        [
            tone_track(n, WINDOW_S, RATE, channels=1)[0] if n % 2 == 0 else melody_track(n, WINDOW_S, RATE)[0]
            for n in range(args.windows)
        ]
    )
    header = {**cpu_facts(), "threads": torch.get_num_threads(), **versions(), "windows": args.windows}
    if not args.json:
        print("\n".join(f"{k:>12}: {v}" for k, v in header.items()), flush=True)
    rows = [row for model in models for row in bench_model(model, args.layer, windows, only, args.repeats)]
    if args.json:
        print(json.dumps({**header, "repeats": args.repeats, "rows": rows}))
        return
    print(f"\n{'model':<6}{'layer':>6}  {'runtime':<20}{'s/window':>10}{'x real':>8}{'speedup':>9}{'min_cosine':>12}")
    for row in rows:
        start = f"{row['model']:<6}{row['layer']:>6}  {row['runtime']:<20}"
        if "error" in row:
            print(f"{start}failed: {row['error']}")
        else:
            speedup, cosine = row.get("speedup", float("nan")), row.get("min_cosine", float("nan"))
            print(f"{start}{row['s_per_window']:>10.3f}{row['x_realtime']:>8.2f}{speedup:>9.2f}{cosine:>12.6f}")
        if "note" in row:
            print(f"{'':<34}{row['note']}")


if __name__ == "__main__":
    main()
