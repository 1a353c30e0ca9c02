"""The share of an ingest's wall time spent saving the indexes, into a catalog of many window vectors.

A catalog of synthetic 768-d vectors (``--windows``, default 1,000,000, as bench/query.py makes
them) gets ``--new`` generated tracks three times in one run: with every save rewriting the index
files every ``--every`` seconds, however long that takes; the same but never more than a tenth of
the time; and the engine's rule, which leaves the files as they are while the rows added since
are few beside them (storage.indexes.CATCH_UP_SHARE: every opener adds those from the database).
It then times what that costs the next opener: loading the indexes with the rows to add, against
loading them just saved. The saving interval is shortened from the engine's 60 s so that a short
run meets what a long ingest does; the model is a light 768-d random one, so the index's cost is
the real one and the model's small (as a GPU's would be).

    .venv/bin/python bench/save.py [--windows 1000000] [--new 100] [--every 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mertsearch.catalog.ingest as ingest_module  # noqa: E402
import mertsearch.storage.indexes as indexes_module  # noqa: E402
from bench.query import fill  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from tests.helpers import melody_track, write_audio, write_tiny_mert  # noqa: E402

SR = 44100
ENGINE_SHARE = ingest_module.SAVE_SHARE
ENGINE_CATCH_UP = indexes_module.CATCH_UP_SHARE
# (what the run is called, the share of time saves may take, the share of rows left to openers)
RULES = [
    ("rewrite at every interval", 1.0, 0.0),
    (f"rewrite, at most {ENGINE_SHARE:.0%} of the time", ENGINE_SHARE, 0.0),
    (f"engine: rewrite once the added rows pass {ENGINE_CATCH_UP:.0%} of the file", ENGINE_SHARE, ENGINE_CATCH_UP),
]
# 768 dims like MERT-v1-95M, one cheap layer: the index is full-size, the model's cost small.
LIGHT_768 = {
    "hidden_size": 768,
    "intermediate_size": 768,
    "num_attention_heads": 12,
    "num_hidden_layers": 1,
    "conv_dim": [64] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 16,
}


def ingest(cat: Catalog, folder: Path, rule: tuple[str, float, float]) -> dict:
    name, ingest_module.SAVE_SHARE, indexes_module.CATCH_UP_SHARE = rule
    started = time.monotonic()
    report = cat.index_paths([folder], decoders=1)
    wall = time.monotonic() - started
    return {
        "rule": name,
        "added": report.added,
        "wall_s": round(wall, 2),
        "saving_s": report.saving_s,
        "saving_share": round(report.saving_s / wall, 3),
    }


def open_s(directory: Path) -> dict:
    """Seconds a reader takes to load both indexes, and the rows it adds from the database."""
    with Catalog.open(directory) as cat:
        started = time.monotonic()
        cat.indexes.load()
        took = time.monotonic() - started
        added = sum(len(getattr(cat.indexes, name).recent) for name in ("tracks", "windows"))
    return {"load_s": round(took, 2), "rows_added": added}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between periodic saves")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ingest_module.SAVE_EVERY_S = args.every
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mertsearch-save-") as scratch:
        root = Path(scratch)
        model, _ = write_tiny_mert(root / "model", overrides=LIGHT_768)
        for arm in range(len(RULES)):
            for n in range(args.new):
                write_audio(root / str(arm) / f"{n:03d}.flac", melody_track(1000 * arm + n, 10, SR), SR)
        with Catalog.create(root / "cat", model=str(model), layer=1, precision="fp32") as cat:
            started = time.monotonic()
            fill(cat, args.windows // 48, rng)  # 36-60 windows a track
            cat.rebuild_index()
            setup = time.monotonic() - started
            index = cat.info()["index"]["windows"]
            rows = [ingest(cat, root / str(arm), rule) for arm, rule in enumerate(RULES)]
        opening = {"to_add": open_s(root / "cat")}
        with Catalog.open(root / "cat") as cat:
            cat.rebuild_index()
        opening["just_saved"] = open_s(root / "cat")
    result = {
        "windows": index["vectors"],
        "index": index["kind"],
        "index_mb": round(index["bytes"] / 2**20),
        "setup_s": round(setup, 1),
        "every_s": args.every,
        "runs": rows,
        "share_ratio": round(rows[-1]["saving_share"] / max(rows[0]["saving_share"], 1e-9), 3),
        "open_s": opening,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['windows']:,} window vectors, {result['index']}, {result['index_mb']} MB (set up in {setup:.0f} s)")
    for row in rows:
        print(
            f"  {row['rule']}: {row['added']} tracks in {row['wall_s']} s, "
            f"{row['saving_s']} s saving ({row['saving_share']:.1%})"
        )
    print(f"share of the time spent saving, engine/every interval: {result['share_ratio']}")
    print(
        f"the next opener loads both indexes in {opening['to_add']['load_s']} s adding "
        f"{opening['to_add']['rows_added']} rows, {opening['just_saved']['load_s']} s just saved"
    )


if __name__ == "__main__":
    main()
