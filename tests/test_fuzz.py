"""Random and mutated audio bytes through the decoder and the query path: errors, never a crash or a hang."""

import multiprocessing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mertsearch import Catalog
from mertsearch.audio.decode import decode_audio
from mertsearch.errors import AudioDecodeError
from tests.helpers import tone_track, write_audio

FORMATS = ["wav", "flac", "mp3", "ogg", "opus", "m4a"]
EXAMPLES = 1000  # per path: the decoder, and a search through a catalog


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid file with bytes flipped, cut, repeated or spliced in."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "zero"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 4096))]
        else:
            data[at : at + draw(st.integers(1, 512))] = bytes(min(512, len(data) - at))
        if not data:
            break
    return bytes(data)


def _fuzz(seeds: list[bytes], catalog_dir, examples: int, counts) -> None:
    inputs = st.one_of(st.binary(max_size=2048), mutated(seeds))
    chosen = settings(
        max_examples=examples, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )

    @chosen
    @given(data=inputs)
    def decoder(data):
        try:
            decode_audio(data, sample_rate=24000)
            counts["decoded"] += 1
        except AudioDecodeError:
            counts["refused"] += 1

    with Catalog.open(catalog_dir) as cat:

        @chosen
        @given(data=inputs)
        def query(data):
            try:
                cat.search(data, k=3)
                counts["searched"] += 1
            except AudioDecodeError:
                counts["refused"] += 1

        decoder()
        query()


@pytest.mark.slow
def test_fuzzed_audio_never_crashes_or_hangs(tmp_path, tiny_model):
    seeds = [
        write_audio(
            tmp_path / f"seed.{ext}",
            tone_track(n, 1.5, 48000 if ext == "opus" else 44100),
            48000 if ext == "opus" else 44100,
        ).read_bytes()
        for n, ext in enumerate(FORMATS)
    ]
    music = tmp_path / "music"
    for n in range(3):
        write_audio(music / f"{n}.flac", tone_track(n, 8, 44100), 44100)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    # In a child process, so a crash (a signal) or a hang is seen rather than suffered. A fresh one
    # (spawned): a forked child of this process, whose earlier tests ran FAISS and torch on OpenMP
    # threads, can deadlock in its first parallel region.
    context = multiprocessing.get_context("spawn")
    counts = context.Manager().dict(decoded=0, searched=0, refused=0)
    child = context.Process(target=_fuzz, args=(seeds, tmp_path / "cat", EXAMPLES, counts))
    child.start()
    child.join(timeout=300)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung, f"the fuzzed decoder hung (after {dict(counts)})"
    assert child.exitcode == 0, f"the fuzz run failed or crashed (exit code {child.exitcode}, {dict(counts)})"
    assert sum(counts.values()) == 2 * EXAMPLES and counts["decoded"] > 0 and counts["refused"] > 0, dict(counts)
