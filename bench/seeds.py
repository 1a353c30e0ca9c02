"""Several seeds, by agreement or by average: how often the top 10 stay within the seeds' labels.

A track's label is its folder (an album, for the warzone2100 soundtrack). Seed sets of 2 and 3
tracks are drawn, seeded, from one folder and from two folders at once (at least one seed from
each); each set asks `similar` for 10 tracks with ``combine="agreement"`` and ``"average"``.
Prints, for each kind of set: the share of the top 10 whose label is one of the seeds' labels
("within"), and for two-folder sets how often both folders are in the top 10 and the share of
the less represented one (1/2 = even).

    .venv/bin/python bench/seeds.py [--catalog /tmp/radio-spectral-cat] [--music FOLDER] [--sets 100]

The catalog is made with the spectral baseline from ``--music`` (default: the warzone2100
soundtrack) when it does not exist yet, and kept for the next run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mertsearch import Catalog  # noqa: E402

MUSIC = Path("/usr/share/games/warzone2100/music")
CATALOG = Path("/tmp/radio-spectral-cat")


def open_catalog(directory: Path, music: Path) -> Catalog:
    """The catalog in ``directory``, indexed from ``music`` with the spectral baseline if new."""
    if directory.exists():
        return Catalog.open(directory)
    cat = Catalog.create(directory, model="spectral")
    cat.index_paths([music])
    return cat


def labels_of(cat: Catalog) -> dict[int, str]:
    paths = cat.store.paths_under([""])
    return {track_id: str(Path(path).parent) for track_id, path in paths}


def seed_sets(by_label: dict[str, list[int]], rng: np.random.Generator, count: int) -> dict[str, list[list[int]]]:
    """``count`` sets (fewer where fewer exist) of each kind: 2 or 3 seeds from one folder of at
    least 13 tracks (so 10 more of its tracks can follow), and from two folders."""
    big = [label for label, ids in by_label.items() if len(ids) >= 13]
    albums = [label for label, ids in by_label.items() if len(ids) >= 2]
    sets: dict[str, list[list[int]]] = {}
    for size in (2, 3):
        one = [list(c) for label in big for c in itertools.combinations(by_label[label], size)]
        two = []
        for first, second in itertools.combinations(albums, 2):
            for split in range(1, size):
                for a in itertools.combinations(by_label[first], split):
                    for b in itertools.combinations(by_label[second], size - split):
                        two.append([*a, *b])
        for name, pool in ((f"{size} seeds, one folder", one), (f"{size} seeds, two folders", two)):
            picked = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
            sets[name] = [pool[int(i)] for i in picked]
    return sets


def measure(cat: Catalog, sets: list[list[int]], labels: dict[int, str], combine: str, k: int) -> dict:
    within, both, weaker = [], [], []
    for seeds in sets:
        wanted = {labels[s] for s in seeds}
        found = [labels[r.track_id] for r in cat.similar(seeds, k=k, combine=combine)]
        within.append(sum(label in wanted for label in found) / len(found))
        if len(wanted) == 2:
            counts = [sum(label == w for label in found) for w in sorted(wanted)]
            both.append(min(counts) > 0)
            weaker.append(min(counts) / max(sum(counts), 1))
    row = {"sets": len(sets), "within": round(float(np.mean(within)), 3)}
    if both:
        row["both folders"] = round(float(np.mean(both)), 3)
        row["weaker folder's share"] = round(float(np.mean(weaker)), 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--sets", type=int, default=100, help="seed sets of each kind")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with open_catalog(args.catalog, args.music) as cat:
        labels = labels_of(cat)
        by_label: dict[str, list[int]] = defaultdict(list)
        for track_id, label in sorted(labels.items()):
            by_label[label].append(track_id)
        report = {
            "catalog": str(args.catalog),
            "tracks": len(labels),
            "folders": {Path(label).name: len(ids) for label, ids in by_label.items()},
            "transform": cat.manifest.transform.kind,
            "rows": {},
        }
        for name, sets in seed_sets(by_label, rng, args.sets).items():
            for combine in ("agreement", "average"):
                report["rows"][f"{name}, {combine}"] = measure(cat, sets, labels, combine, args.k)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['tracks']} tracks, folders {report['folders']}, transform {report['transform']}, top {args.k}")
    for name, row in report["rows"].items():
        extra = "".join(f", {key} {value}" for key, value in row.items() if key not in ("sets", "within"))
        print(f"{name}: {row['sets']} sets, within the seeds' folders {row['within']}{extra}")


if __name__ == "__main__":
    main()
