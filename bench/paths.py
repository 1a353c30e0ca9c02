"""Song paths on a real catalog: how close each step is to its neighbours, and how steadily a path
moves towards its end.

For seeded pairs of tracks (START, END) a path of ``--count`` tracks is asked for; in the
catalog's searched space (transformed, normalised track vectors) it prints:

- step cosine: the mean cosine of consecutive tracks of the paths, against the mean cosine of
  random pairs of tracks and of consecutive tracks of random orders (START, shuffled others, END);
- rising: the share of steps whose cosine to END rises (a steady path: 1), against the random orders;
- the mean cosine of START and END, for scale.

    .venv/bin/python bench/paths.py [--catalog /tmp/radio-spectral-cat] [--pairs 50] [--count 8]

The catalog is made with the spectral baseline from ``--music`` when it does not exist yet (see
bench/seeds.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.seeds import CATALOG, MUSIC, open_catalog  # noqa: E402
from mertsearch.catalog import radio  # noqa: E402
from mertsearch.storage.store import from_blob  # noqa: E402


def searched_vectors(cat) -> dict[int, np.ndarray]:
    """Every track's vector as the search sees it: transformed and normalised."""
    ids = [track_id for track_id, _ in cat.store.paths_under([""])]
    rows = cat.store.tracks_by_id(ids)
    vectors = cat.transform(np.stack([from_blob(rows[i].vector) for i in ids]))
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return dict(zip(ids, vectors, strict=True))


def path_figures(tracks: list[int], vectors: dict[int, np.ndarray]) -> tuple[list[float], list[bool]]:
    """Cosines of consecutive tracks, and whether each step's cosine to the last track rises."""
    chain = np.stack([vectors[t] for t in tracks])
    steps = np.sum(chain[:-1] * chain[1:], axis=1)
    to_end = chain @ chain[-1]
    return steps.tolist(), (np.diff(to_end) > 0).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--music", type=Path, default=MUSIC)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--choices", type=int, default=radio.PATH_CHOICES, help="nearest tracks a step chooses from (1: the nearest)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    radio.PATH_CHOICES = args.choices
    rng = np.random.default_rng(args.seed)
    with open_catalog(args.catalog, args.music) as cat:
        vectors = searched_vectors(cat)
        ids = sorted(vectors)
        matrix = np.stack([vectors[i] for i in ids])
        pairs = matrix @ matrix.T
        random_pairs = float(pairs[np.triu_indices(len(ids), 1)].mean())
        steps, rising, random_steps, random_rising, ends = [], [], [], [], []
        for _ in range(args.pairs):
            start, end = (int(i) for i in rng.choice(ids, size=2, replace=False))
            path = [r.track_id for r in cat.path(start, end, args.count)]
            assert len(path) == len(set(path)) == args.count and path[0] == start and path[-1] == end
            got_steps, got_rising = path_figures(path, vectors)
            steps += got_steps
            rising += got_rising
            others = [i for i in ids if i not in (start, end)]
            middle = [int(i) for i in rng.choice(others, size=args.count - 2, replace=False)]
            shuffled_steps, shuffled_rising = path_figures([start, *middle, end], vectors)
            random_steps += shuffled_steps
            random_rising += shuffled_rising
            ends.append(float(vectors[start] @ vectors[end]))
    report = {
        "catalog": str(args.catalog),
        "tracks": len(ids),
        "transform": cat.manifest.transform.kind,
        "pairs": args.pairs,
        "count": args.count,
        "choices": args.choices,
        "step_cosine": round(float(np.mean(steps)), 4),
        "step_cosine_random_order": round(float(np.mean(random_steps)), 4),
        "random_pair_cosine": round(random_pairs, 4),
        "start_end_cosine": round(float(np.mean(ends)), 4),
        "rising_share": round(float(np.mean(rising)), 3),
        "rising_share_random_order": round(float(np.mean(random_rising)), 3),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['tracks']} tracks, transform {report['transform']}, {args.pairs} paths of {args.count} tracks, "
        f"steps chosen among the {args.choices} nearest"
    )
    print(
        f"step cosine {report['step_cosine']} (random orders {report['step_cosine_random_order']}, "
        f"random pairs {report['random_pair_cosine']}, start-end {report['start_end_cosine']})"
    )
    print(f"steps rising towards END {report['rising_share']} (random orders {report['rising_share_random_order']})")


if __name__ == "__main__":
    main()
