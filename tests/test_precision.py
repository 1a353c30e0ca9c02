"""Model precision: what "auto" decides on either kind of CPU (the hardware check simulated, the
arithmetic real), and reduced precision against fp32 on what matters: pooled vectors and rankings."""

import json

import numpy as np
import pytest

import mertsearch.encoder.mert as mert
from mertsearch import Catalog, cache
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.encoder.mert import MIN_COSINE, MertEncoder, decide_precision
from mertsearch.errors import InvalidArgumentError
from tests.helpers import DISCERNING, tone_track, write_audio, write_tiny_mert


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small checkpoint whose random features are as well-conditioned as a real model's in bf16."""
    directory, _ = write_tiny_mert(tmp_path_factory.mktemp("models") / "discerning", overrides=DISCERNING)
    return directory


def _simulated_cpu(monkeypatch, *, bf16_units: bool, fp32_s: float = 1.0, bf16_s: float = 0.5) -> None:
    """A CPU with or without bf16 units, whose measured times are the given ones; the arithmetic is real."""
    monkeypatch.setattr(mert, "native_bf16", lambda device: bf16_units)
    real = MertEncoder._timed

    def timed(self, windows, precision):
        _, vectors = real(self, windows, precision)
        return {"fp32": fp32_s, "bf16": bf16_s}[precision], vectors

    monkeypatch.setattr(MertEncoder, "_timed", timed)


def test_auto_on_a_cpu_without_bf16_units_is_fp32_without_measuring(monkeypatch, model):
    _simulated_cpu(monkeypatch, bf16_units=False)
    monkeypatch.setattr(MertEncoder, "_timed", lambda *args: pytest.fail("nothing to measure without bf16 units"))
    encoder = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
    assert encoder.precision == "fp32"
    assert encoder.precision_report == {"asked": "auto", "chosen": "fp32", "why": "no native bf16 on this device"}


def test_auto_on_a_cpu_with_bf16_units_is_bf16_where_faster_and_close(monkeypatch, model):
    _simulated_cpu(monkeypatch, bf16_units=True, fp32_s=1.0, bf16_s=0.5)
    encoder = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
    report = encoder.precision_report
    assert encoder.precision == report["chosen"] == "bf16"
    assert report["fp32_s"] == 1.0 and report["bf16_s"] == 0.5 and report["min_cosine"] >= MIN_COSINE
    assert report["why"].startswith("bf16 2.00x faster")


def test_auto_on_a_cpu_with_slow_bf16_is_fp32(monkeypatch, model):
    _simulated_cpu(monkeypatch, bf16_units=True, fp32_s=1.0, bf16_s=0.95)
    encoder = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
    assert encoder.precision == "fp32" and encoder.precision_report["why"] == "bf16 is not faster here"


def test_auto_measures_once_per_weights_and_device(monkeypatch, model, tiny_model):
    _simulated_cpu(monkeypatch, bf16_units=True, fp32_s=1.0, bf16_s=0.5)
    first = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
    assert "cached" not in first.precision_report
    monkeypatch.setattr(MertEncoder, "_timed", lambda *args: pytest.fail("measured again"))
    again = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
    assert again.precision == "bf16" and again.precision_report == {**first.precision_report, "cached": True}
    # Other weights, layers or batch size are measured for themselves.
    for checkpoint, layers, batch_size in ((tiny_model, 2, 1), (model, 1, 1), (model, 2, 2)):
        with pytest.raises(pytest.fail.Exception, match="measured again"):
            MertEncoder(resolve_checkpoint(str(checkpoint)), layers, batch_size=batch_size, precision="auto")


def test_a_corrupt_precision_cache_is_measured_again(monkeypatch, model):
    _simulated_cpu(monkeypatch, bf16_units=True, fp32_s=1.0, bf16_s=0.95)
    cache.cache_dir().mkdir(parents=True)
    for text in ("\x00 not json", "[1, 2]"):
        (cache.cache_dir() / mert.PRECISION_CACHE).write_text(text)
        encoder = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
        assert encoder.precision == "fp32" and "cached" not in encoder.precision_report
    entries = json.loads((cache.cache_dir() / mert.PRECISION_CACHE).read_text())
    (key,) = entries
    for broken in ("a string", {"chosen": "int4"}):  # a damaged entry: measured again, not trusted
        (cache.cache_dir() / mert.PRECISION_CACHE).write_text(json.dumps({key: broken}))
        encoder = MertEncoder(resolve_checkpoint(str(model)), 2, precision="auto")
        assert encoder.precision == "fp32" and "cached" not in encoder.precision_report


def test_a_given_precision_neither_measures_nor_caches(monkeypatch, model):
    _simulated_cpu(monkeypatch, bf16_units=True)
    monkeypatch.setattr(MertEncoder, "_timed", lambda *args: pytest.fail("measured"))
    for precision in ("fp32", "bf16", "fp16"):
        assert MertEncoder(resolve_checkpoint(str(model)), 2, precision=precision).precision_report == {
            "asked": precision,
            "chosen": precision,
        }
    assert not (cache.cache_dir() / mert.PRECISION_CACHE).exists()


@pytest.mark.parametrize(
    "measured,chosen",
    [
        ({"native": False}, "fp32"),
        ({"native": True, "fp32_s": 1.0, "bf16_s": 0.5, "min_cosine": 0.99999}, "bf16"),
        ({"native": True, "fp32_s": 1.0, "bf16_s": 0.95, "min_cosine": 0.99999}, "fp32"),  # not 10% faster
        ({"native": True, "fp32_s": 1.0, "bf16_s": 0.5, "min_cosine": 0.999}, "fp32"),  # too far from fp32
    ],
)
def test_the_auto_rule(measured, chosen):
    assert decide_precision(**measured)[0] == chosen


def test_auto_on_this_machine_follows_the_rule(tiny_model):
    """The real check on whatever CPU runs the tests: its choice is the rule's on what it measured."""
    encoder = MertEncoder(resolve_checkpoint(str(tiny_model)), 3, precision="auto")
    report = encoder.precision_report
    assert encoder.model.config._attn_implementation == "sdpa"
    if "fp32_s" in report:
        measured = {key: report[key] for key in ("fp32_s", "bf16_s", "min_cosine")}
        assert decide_precision(native=True, **measured)[0] == report["chosen"] == encoder.precision
    else:
        assert report["chosen"] == encoder.precision == "fp32"


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory, model):
    """The same six generated tracks indexed in fp32, bf16 and fp16."""
    root = tmp_path_factory.mktemp("precisions")
    for seed in range(6):
        write_audio(root / "music" / f"{seed}.flac", tone_track(seed, 9 + 3 * seed, 44100), 44100)
    opened = {}
    for precision in ("fp32", "bf16", "fp16"):
        cat = Catalog.create(root / precision, model=str(model), layer=2, precision=precision)
        assert cat.index_paths([root / "music"], decoders=0).precision == precision
        opened[precision] = cat
    yield root, opened
    for cat in opened.values():
        cat.close()


def _track_vectors(cat: Catalog) -> np.ndarray:
    return cat.store.all_track_vectors(cat.manifest.encoder.dim)[1]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_keeps_track_vectors_and_rankings(catalogs, precision):
    root, opened = catalogs
    reference, reduced = opened["fp32"], opened[precision]
    cosines = np.sum(_track_vectors(reference) * _track_vectors(reduced), axis=1)
    assert cosines.min() >= 0.999
    for track_id in range(1, 7):
        assert [r.track_id for r in reduced.similar([track_id], k=5)] == [
            r.track_id for r in reference.similar([track_id], k=5)
        ]
    clip = (tone_track(3, 8, 44100), 44100)
    assert [r.track_id for r in reduced.search(clip, k=3)] == [r.track_id for r in reference.search(clip, k=3)]


def test_the_environment_sets_the_precision_where_none_is_given(tmp_path, tiny_model, music, monkeypatch):
    from typer.testing import CliRunner

    from mertsearch.cli import app

    monkeypatch.setenv("MERTSEARCH_PRECISION", "bf16")
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        assert cat.index_paths([music / "a.wav"], decoders=0).precision == "bf16"
    args = ["index", str(music / "b.flac"), "--catalog", str(tmp_path / "cat"), "--decoders", "0", "--json"]
    runner = CliRunner()
    assert json.loads(runner.invoke(app, args).stdout)["precision"] == "bf16"
    given = json.loads(runner.invoke(app, [*args, "--precision", "fp32"]).stdout)  # the option wins
    assert given["precision"] == "fp32"
    monkeypatch.setenv("MERTSEARCH_PRECISION", "half")
    with pytest.raises(InvalidArgumentError, match="MERTSEARCH_PRECISION must be one of auto, fp32, bf16, fp16"):
        Catalog.open(tmp_path / "cat")
    with pytest.raises(InvalidArgumentError, match="precision must be one of"):
        MertEncoder(resolve_checkpoint(str(tiny_model)), 3, precision="int4")
