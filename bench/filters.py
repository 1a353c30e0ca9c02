"""Filters and look-ups over tags in many scripts, on a catalog of 100,000 tracks: each against a
plain `similar` in the same run.

Synthetic tracks (a few 32-d window vectors each, in clusters: the search's cost is FAISS's, the
filter's is the database's) are stored through the real store, tagged with --artists artists
whose names mix scripts and forms (Latin with accents in NFC and NFD, Cyrillic, Greek, CJK,
German ß, Turkish İ), 10-20 albums each. Timed, the median of --repeats: `similar` of one track
with no filter, filtered to one artist (as tagged, and as typed in other case and form), to one
album, to an artist that no track has, and `find_tracks` of text in several scripts. Each line
gives its ratio to the plain `similar`, and how many results came back (0 where a filter misses
tags that it should match).

    .venv/bin/python bench/filters.py [--tracks 100000] [--artists 5000] [--repeats 7] [--catalog DIR] [--json]

With --catalog, the catalog is kept there and a later run reuses it (no fill): so one catalog filled
by an older version measures this one's first opening (which adds the folded copies of the tags).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_facts  # noqa: E402
from mertsearch import Catalog  # noqa: E402
from mertsearch.storage.filters import Filters  # noqa: E402
from tests.helpers import synthetic_track, write_tiny_mert  # noqa: E402

DIM = 32  # the tiny model's: it is never run, its manifest only says the vectors' size
NAMES = ["Édith Piaf", "Кино", "Σωκράτης Μάλαμας", "坂本龍一", "Straßenkinder", "İlhan İrem", "Sigur Rós", "Ann"]


def artist_name(n: int) -> str:
    name = f"{NAMES[n % len(NAMES)]} {n}"
    return unicodedata.normalize("NFD" if n % 3 == 0 else "NFC", name)


def fill(cat: Catalog, tracks: int, artists: int, rng: np.random.Generator) -> None:
    """Through the store's own put_track, a thousand tracks a transaction (one each is slow to fill)."""
    centres = rng.normal(size=(200, DIM))
    store = cat.store
    for first in range(0, tracks, 1000):
        with store.session() as session, session.begin():
            for n in range(first, min(first + 1000, tracks)):
                windows = centres[rng.integers(len(centres))] + rng.normal(0, 0.3, (3, DIM))
                windows = (windows / np.linalg.norm(windows, axis=1, keepdims=True)).astype(np.float32)
                artist = int(rng.integers(artists))
                tags = {"artist": artist_name(artist), "album": f"Album {artist}-{n % 13}", "title": f"Song {n}"}
                store._put_track(session, synthetic_track(n, windows, tags=tags))


def median_ms(repeats: int, action) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = action()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--artists", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--catalog", type=Path, help="keep the catalog here; reuse it if it is there")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.catalog or Path(tmp) / "cat"
        fill_s = None
        if not (directory / "manifest.json").exists():
            model, _ = write_tiny_mert(directory.parent / f"{directory.name}-model")
            with Catalog.create(directory, model=str(model), layer=2) as cat:
                assert cat.manifest.encoder.dim == DIM
                started = time.perf_counter()
                fill(cat, args.tracks, args.artists, rng)
                cat.rebuild_index()
                fill_s = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        with Catalog.open(directory) as cat:
            open_s = round(time.perf_counter() - started, 2)
            seed = 1
            cat.similar(seed, k=10)  # warm up: indexes loaded
            tagged = artist_name(1)
            cases = {
                "similar, no filter": lambda: cat.similar(seed, k=10),
                "artist as tagged": lambda: cat.similar(seed, k=10, filters=Filters(artist=(tagged,))),
                "artist upper case, NFC": lambda: cat.similar(
                    seed, k=10, filters=Filters(artist=(unicodedata.normalize("NFC", tagged.upper()),))
                ),
                "artist Cyrillic, lower case": lambda: cat.similar(seed, k=10, filters=Filters(artist=("кино 1",))),
                "album": lambda: cat.similar(seed, k=10, filters=Filters(album=("album 1-1",))),
                "artist no track has": lambda: cat.similar(seed, k=10, filters=Filters(artist=("nobody",))),
                "find 'кино 1'": lambda: cat.find_tracks("кино 1")["total"],
                "find 'ÉDITH'": lambda: cat.find_tracks("ÉDITH")["total"],
                "find '龍一 9'": lambda: cat.find_tracks("龍一 9")["total"],
            }
            rows = {}
            for name, action in cases.items():
                ms, count = median_ms(args.repeats, lambda action=action: _count(action()))
                rows[name] = {"ms": ms, "results": count}
    base = rows["similar, no filter"]["ms"]
    for row in rows.values():
        row["ratio"] = round(row["ms"] / base, 2)
    document = {"machine": cpu_facts(), "tracks": args.tracks, "artists": args.artists, "fill_s": fill_s}
    document["open_s"] = open_s
    document["cases"] = rows
    if args.json:
        print(json.dumps(document, ensure_ascii=False))
        return
    print(f"{args.tracks} tracks, {args.artists} artists, filled in {fill_s} s, opened in {open_s} s; {cpu_facts()}")
    for name, row in rows.items():
        print(f"  {name:30} {row['ms']:9.2f} ms  x{row['ratio']:<6} {row['results']} result(s)")


def _count(value) -> int:
    return value if isinstance(value, int) else len(value)


if __name__ == "__main__":
    main()
