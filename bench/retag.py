"""Retagging a library: `index` after every file's tags changed, against the first `index`, same run.

A catalog of --tracks real recordings (by default Debian's warzone2100-music, cut to --seconds each
and written in six formats: FLAC, MP3 with ID3v2, Ogg Vorbis, Opus, M4A, WAV) is indexed with
full-size MERT-v1-95M with random weights (the real compute; --model spectral for the weight-free
encoder). Then every file is retagged as Picard or `beet write` would (a new title and artist, a
100 kB cover where the format holds one), and indexed again; then every file is moved to another
folder and indexed again. Each figure is the wall time of `index_paths`, the model loaded before
the clock starts; "windows" counts what the model embedded.

    .venv/bin/python bench/retag.py [--tracks 30] [--seconds 60] [--model mert|spectral] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.encoder import MERT_V1_95M  # noqa: E402
from bench.machine import cpu_facts  # noqa: E402
from tests.helpers import write_tiny_mert  # noqa: E402
from tests.test_retag import retag  # noqa: E402

MUSIC = Path("/usr/share/games/warzone2100/music")
FORMATS = [
    ("flac", []),
    ("mp3", ["-b:a", "192k"]),
    ("ogg", ["-c:a", "libvorbis"]),
    ("opus", []),
    ("m4a", []),
    ("wav", []),
]


def make_library(music: Path, folder: Path, tracks: int, seconds: float) -> list[Path]:
    from mertsearch.indexer.discover import discover_files

    sources = discover_files([music])[:tracks]
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for n, source in enumerate(sources):
        ext, codec = FORMATS[n % len(FORMATS)]
        target = folder / f"{n:03d}-{source.stem}.{ext}"
        command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", str(seconds), "-map", "0:a", *codec]
        subprocess.run([*command, str(target)], check=True)
        made.append(target)
    return made


def timed_index(cat, folder: Path) -> dict:
    encoder = cat.encoder
    embed = encoder.embed_windows
    counted = {"windows": 0}

    def counting(samples):
        counted["windows"] += len(samples)
        return embed(samples)

    encoder.embed_windows = counting
    try:
        started = time.perf_counter()
        report = cat.index_paths([folder])
        elapsed = time.perf_counter() - started
    finally:
        del encoder.embed_windows
    keys = ("added", "updated", "retagged", "moved", "unchanged", "removed")
    return {"elapsed_s": round(elapsed, 3), "windows": counted["windows"], **{k: getattr(report, k) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", choices=["mert", "spectral"], default="mert")
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mertsearch import Catalog

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_library(args.music, root / "music" / "a", args.tracks, args.seconds)
        model = "spectral"
        if args.model == "mert":
            model = str(write_tiny_mert(root / "mert-v1-95m-random", overrides=MERT_V1_95M)[0])
        with Catalog.create(root / "cat", model=model) as cat:
            first = timed_index(cat, root / "music")
            for n, path in enumerate(files):
                retag(path, f"Retagged title {n} ÉÖ кино")
            retagged = timed_index(cat, root / "music")
            shutil.move(root / "music" / "a", root / "music" / "b")
            moved = timed_index(cat, root / "music")
    document = {
        "machine": cpu_facts(),
        "model": args.model,
        "tracks": len(files),
        "seconds_each": args.seconds,
        "first_index": first,
        "after_retagging_every_file": retagged,
        "after_moving_every_file": moved,
        "retag_share_of_first": round(retagged["elapsed_s"] / first["elapsed_s"], 4),
        "move_share_of_first": round(moved["elapsed_s"] / first["elapsed_s"], 4),
    }
    if args.json:
        print(json.dumps(document))
        return
    print(f"{document['tracks']} tracks of {args.seconds:g} s, {args.model}, {document['machine']}")
    for name in ("first_index", "after_retagging_every_file", "after_moving_every_file"):
        print(f"  {name:28} {json.dumps(document[name])}")
    print(f"  retag index / first index: {document['retag_share_of_first']:.2%}")
    print(f"  move index / first index:  {document['move_share_of_first']:.2%}")


if __name__ == "__main__":
    main()
