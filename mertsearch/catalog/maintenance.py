"""Work on what a catalog has stored, without the model: switching layers and transform, rebuilding
the indexes, checking and repairing, and measuring the search (evaluate, tune layers)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mertsearch.catalog.calibrate import fitted as fitted_calibration
from mertsearch.catalog.calibrate import refresh as refresh_calibration
from mertsearch.catalog.calibrate import stored as stored_calibration
from mertsearch.catalog.core import Core
from mertsearch.catalog.duplicates import checker, refit, relink_all, rule_due
from mertsearch.catalog.ingest import remove
from mertsearch.catalog.layout import DATABASE, INDEX_DIR, default_database
from mertsearch.config import TransformSpec
from mertsearch.encoder.pooling import searchable_vectors
from mertsearch.errors import InvalidArgumentError
from mertsearch.evaluation.metrics import score_spread
from mertsearch.settings import LayersArg, resolve_layers
from mertsearch.storage import MetadataStore, write_manifest
from mertsearch.storage.indexes import NAMES
from mertsearch.storage.transform import VectorTransform
from mertsearch.storage.vector_index import remove_saved
from mertsearch.storage.vector_store import check_vector_store, collections_prefix
from mertsearch.storage.verify import check_indexes, check_store, index_problems

# Tracks whose vectors the spread of scores reindex reports is measured on: its 5,000 random pairs
# need no more, and a million tracks' vectors would take 3 GB.
SPREAD_TRACKS = 10_000


def rebuild_index(cat: Core, factory: str | None, *, shard_size: int | None, vector_store: str | None = None) -> None:
    """See :meth:`mertsearch.catalog.Catalog.rebuild_index`; the caller holds the writer lock."""
    if shard_size is not None and shard_size < 1:
        raise InvalidArgumentError(f"shard_size must be at least 1, got {shard_size}")
    index = cat.manifest.index
    target = index.vector_store
    if vector_store is not None:
        target = None if vector_store == "faiss" else check_vector_store(vector_store)
    if target != index.vector_store:
        _move_vectors(cat, target, factory, shard_size)
        return
    cat.indexes.rebuild(factory, shard_size=shard_size, announce=True)
    if factory is not None and factory != index.factory:
        index.factory = factory
        write_manifest(cat.directory, cat.manifest)


def _move_vectors(cat: Core, target: str | None, factory: str | None, shard_size: int | None) -> None:
    """Build the vectors in another store (``target``: a Milvus URL, or None for FAISS files) from
    the stored ones and name it in the manifest; only then drop the old store's, which no one
    uses any more, so the manifest never names a dropped store. On a failure before the manifest
    is written the catalog stays with its old store."""
    index, old = cat.manifest.index, cat.indexes
    before = (index.vector_store, index.collections, index.factory)
    index.vector_store, index.collections = target, (collections_prefix() if target else None)
    cat._indexes = None  # opened again, in the new store
    try:
        cat.indexes.rebuild(factory, shard_size=shard_size, announce=True)
        index.factory = factory or index.factory
        write_manifest(cat.directory, cat.manifest)
    except BaseException:
        index.vector_store, index.collections, index.factory = before
        cat._indexes = old
        raise
    if before[0] is None:
        for name in ("tracks", "windows"):
            remove_saved(cat.directory / INDEX_DIR, name)
    else:
        old.drop()


def reindex(cat: Core, layers: LayersArg, transform: str | None) -> dict:
    """See :meth:`mertsearch.catalog.Catalog.reindex`; the caller holds the writer lock."""
    started = time.monotonic()
    spec = cat.manifest.encoder
    new_layers = spec.layers if layers is None else resolve_layers(layers, spec.num_layers)
    before = _spread(cat, cat.transform)
    rewritten = 0
    if new_layers != spec.layers:
        kept = spec.kept_layers
        if not kept:
            raise InvalidArgumentError(
                f"this catalog stores only the vectors of layers {spec.layers}; to switch layers without "
                "the model, index into a new catalog with --keep-layers all (or re-index with --layers)"
            )
        positions = [kept.index(layer) for layer in new_layers]
        rewritten = cat.store.rewrite_searchable(
            spec.dim, lambda windows: searchable_vectors(windows, positions), {"layers": json.dumps(new_layers)}
        )
        cat.switch_layers(new_layers)
    kind = cat.manifest.transform.kind if transform is None else transform
    # Fitted batch by batch: the catalog's track vectors are never all in memory.
    fitted = VectorTransform.fit_batches(kind, lambda: (vectors for _, vectors in cat.store.track_vectors()))
    tracks = cat.store.count("tracks")
    spec_transform = TransformSpec(
        kind=kind,
        file=None if kind == "none" else fitted.save(cat.directory),
        fitted_on_tracks=0 if kind == "none" else tracks,
    )
    previous = cat.manifest.transform.file
    # Fitted under the new layers and transform and stored with them, so no reader sees one without the other.
    calibration = fitted_calibration(cat, transform=fitted, transform_file=spec_transform.file)
    cat.store.update_meta(
        {"transform": json.dumps(asdict(spec_transform)), **stored_calibration(calibration)}, searchable_changed=True
    )
    cat.manifest.transform = spec_transform
    write_manifest(cat.directory, cat.manifest)
    # The previous file stays one generation: a reader that has just read its name may be loading it.
    for old in cat.directory.glob("transform-*.npz"):
        if old.name not in (spec_transform.file, previous):
            old.unlink(missing_ok=True)
    cat.use_transform(fitted)
    cat.take_up_meta()  # the calibration just stored
    rebuild_index(cat, None, shard_size=None)
    refit(cat)  # the window vectors (other layers) or the neighbours (another transform) changed
    return {
        "layers": new_layers,
        "transform": kind,
        "tracks": tracks,
        "tracks_rewritten": rewritten,
        "scores_before": before,
        "scores_after": _spread(cat, fitted),
        "seconds": round(time.monotonic() - started, 3),
        "calibration": None if calibration is None else calibration.summary(),
    }


def _spread(cat: Core, transform: VectorTransform) -> dict:
    """The spread of scores between random pairs of tracks (score_spread), among SPREAD_TRACKS
    tracks drawn at random (all of them in a smaller catalog)."""
    vectors = cat.store.sample_vectors("tracks", SPREAD_TRACKS)
    return score_spread(transform(vectors) if len(vectors) else vectors)


def verify(cat: Core) -> list[str]:
    problems = []
    spec = cat.manifest.encoder
    for key, value in (("layers", spec.layers), ("transform", asdict(cat.manifest.transform))):
        stored = cat.store.meta(key)
        if stored is not None and json.loads(stored) != value:
            problems.append(f"the manifest's {key} ({value}) differ from the database's ({stored})")
    kind = cat.manifest.transform
    if cat.transform_missing():
        problems.append(f"the transform file {kind.file} is missing (reindex --transform {kind.kind})")
    problems += check_store(cat.store, spec.dim)
    if not cat.transform_missing():  # the index checks compare through the transform
        indexes = cat.indexes
        problems += indexes.check() if hasattr(indexes, "check") else check_indexes(indexes, cat.transform)
    return problems


def repair(cat: Core, *, full: bool = False) -> list[str]:
    """See :meth:`mertsearch.catalog.Catalog.repair`; the caller holds the writer lock."""
    done = []
    orphans, led_again, empty = cat.store.repair_rows()
    if orphans:
        done.append(f"removed {orphans} windows that belonged to no track")
    if led_again:
        done.append(f"made {led_again} duplicate-group leaders lead again")
    if empty:
        remove(cat, empty)
        done.append(f"removed {len(empty)} tracks that had no windows (index their files again)")
    refitted = cat.transform_missing()
    if refitted:
        reindex(cat, None, cat.manifest.transform.kind)
        done.append("fitted the transform again")
    if full:
        rebuild_index(cat, None, shard_size=None)
        done.append("rebuilt both indexes from the stored vectors")
    else:
        done += _mend_indexes(cat)
    # A catalog made before results had a similarity gets its calibration here, not only at reindex.
    if cat.calibration is None and refresh_calibration(cat) is not None:
        done.append("fitted the similarity calibration (results now carry a similarity)")
    # Links are decided again when they may be wrong: groups were mended, tracks went, the
    # vectors changed kind, or the limit they were decided under no longer fits the catalog.
    if full or led_again or empty or refitted or rule_due(cat):
        done += relink_all(cat)
    return done


def _mend_indexes(cat: Core) -> list[str]:
    """Rebuild only the indexes that verify finds wrong (Milvus: reconcile what ids can mend)."""
    indexes = cat.indexes
    if hasattr(indexes, "mend"):
        return indexes.mend()
    broken = {name: problems for name in NAMES if (problems := index_problems(indexes, name, cat.transform))}
    if not broken:
        return []
    indexes.rebuild(names=list(broken), announce=True)
    which = "both indexes" if len(broken) == len(NAMES) else "the {} index"
    reasons = "; ".join(problem for problems in broken.values() for problem in problems)
    return [f"rebuilt {which.format(*broken)} from the stored vectors ({reasons})"]


# Tracks the spectral baseline indexes and the layer sweep copies, at most: a catalog up to this
# size whole, a larger one as the excerpts' tracks and a seeded sample of the others. The baseline
# decodes and indexes each file again, and the sweep rewrites each track's vectors per layer.
COMPARED_TRACKS = 1000


def evaluate(cat: Core, *, baseline: bool, **settings) -> dict:
    """How good the search is on this catalog (see mertsearch.evaluation).

    Excerpt identification, clean and degraded; label retrieval for every stored layer (labels
    from ``labels`` or folder names, when two tracks share one; at most 2,000 labelled tracks
    query, see evaluation.metrics.QUERIES); the spread of scores between random pairs of tracks
    against true pairs (a clean excerpt's pooled vector and its source track's), both raw and
    centered, and the true matches' scores as searched. With ``baseline`` the excerpts' files
    are also indexed, in a temporary catalog, with the spectral baseline, which answers the same
    excerpts: a reference row. It holds every file of a catalog of up to COMPARED_TRACKS
    tracks, else the excerpts' and a seeded sample of the others, COMPARED_TRACKS in all (it
    decodes each of them again).

    A catalog that keeps every layer also gets excerpt identification for each kept layer
    (``identification["layers"]``): the model runs once per degraded excerpt, as for one layer,
    and a scratch copy of the catalog (its database: about 43 MB per hour of audio for
    MERT-v1-95M; of the same COMPARED_TRACKS tracks as the baseline in a larger catalog) is
    switched to each layer from stored vectors and searched. Per layer that adds a reindex of the
    copy (under a second for a few hours of audio) and one search per degraded excerpt; see
    mertsearch.evaluation.excerpts.identify.

    Duplicate detection decodes each of its tracks whole, at the file's own rate, encodes six
    copies of it and embeds each: about six times those tracks' audio through the model; the
    catalog's distinct pairs are compared from stored vectors (see mertsearch.evaluation.duplicates).
    """
    from mertsearch.encoder.registry import SPECTRAL
    from mertsearch.evaluation.evaluate import evaluate

    spec = cat.manifest.encoder
    opened = type(cat)  # the catalogs made for comparison are of the kind evaluated
    with contextlib.ExitStack() as stack:

        def spectral_baseline(drawn: list) -> Core:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mertsearch-baseline-")))
            # A throwaway catalog: SQLite in its folder, whatever MERTSEARCH_DATABASE says.
            reference = stack.enter_context(
                opened.create(folder, model=SPECTRAL, hop=cat.windows.hop_s, database=default_database(folder))
            )
            chosen = compared(cat, drawn, settings["seed"])
            reference.index_paths(
                [path for track_id, path, _ in cat.store.durations() if chosen is None or track_id in chosen]
            )
            return reference

        def layer_sweep(drawn: list) -> Core:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mertsearch-layers-")))
            _scratch_copy(cat, folder, compared(cat, drawn, settings["seed"]))
            return stack.enter_context(opened.open(folder))

        report = evaluate(
            cat,
            **settings,
            baseline=spectral_baseline if baseline and spec.architecture != SPECTRAL else None,
            sweep=layer_sweep if len(spec.kept_layers) > 1 else None,
            duplicates=lambda: checker(cat),
        )
    if cat.manifest.text is not None:
        report["text"] = text_retrieval(cat, settings["labels"], k=settings["k"])
    return report


def text_retrieval(cat: Core, labels: dict[str, str] | None, *, k: int) -> dict:
    """Words against the tracks they describe (see evaluation.text): captions from the genre tags,
    else from ``labels`` or the folder names."""
    from mertsearch.evaluation.text import caption_retrieval

    vectors = cat.store.text_vectors_of(cat.store.ids("tracks"))
    ids = sorted(vectors)
    tracks = cat.store.tracks_by_id(ids)
    genres = [tracks[i].genre for i in ids]
    if sum(bool(genre) for genre in genres) >= 2:
        chosen, source = genres, "genre"
    elif labels is not None:
        chosen, source = [labels.get(tracks[i].path) or labels.get(f"#{i}") for i in ids], "labels"
    else:
        chosen, source = [Path(tracks[i].path).parent.name for i in ids], "folder"
    matrix = np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, cat.manifest.text.dim), np.float32)
    return caption_retrieval(matrix, chosen, cat.text_model.text_vectors, k=k, source=source)


def compared(cat: Core, drawn: list, seed: int) -> set[int] | None:
    """The tracks the baseline indexes and the layer sweep copies (None: every one): in a catalog
    that leads more than COMPARED_TRACKS tracks, the excerpts' tracks and a sample of the others
    drawn with ``seed``, COMPARED_TRACKS in all."""
    limit = COMPARED_TRACKS
    leaders = [track_id for track_id, _, _ in cat.store.durations()]
    if len(leaders) <= limit:
        return None
    chosen = {excerpt.track_id for excerpt in drawn}
    others = sorted(set(leaders) - chosen)
    count = max(0, min(limit - len(chosen), len(others)))
    return chosen | {int(i) for i in np.random.default_rng(seed).choice(others, count, replace=False)}


def evaluation_plan(cat: Core, *, excerpts: int, baseline: bool, duplicates: int, **_settings) -> dict:
    """What ``evaluate`` will do on this catalog, counted before it starts (see Catalog.evaluation_plan)."""
    from mertsearch.encoder.registry import SPECTRAL
    from mertsearch.evaluation.excerpts import DEGRADATIONS
    from mertsearch.evaluation.metrics import QUERIES

    spec = cat.manifest.encoder
    leaders = cat.store.durations()
    compared_tracks = min(len(leaders), COMPARED_TRACKS)
    share = compared_tracks / len(leaders) if leaders else 0.0
    hours = sum(duration for _, _, duration in leaders) / 3600 * share
    swept = len(spec.kept_layers) if len(spec.kept_layers) > 1 else 0
    compares = baseline and spec.architecture != SPECTRAL
    excerpts = min(excerpts, len(leaders))
    return {
        "tracks": cat.store.count("tracks"),
        "excerpts": excerpts,
        # Each degraded excerpt searched by the catalog, the baseline and each swept layer.
        "searches": excerpts * len(DEGRADATIONS) * (1 + int(compares) + swept),
        "label_queries": min(cat.store.count("tracks"), QUERIES),
        "label_rankings": 2 * max(1, len(spec.kept_layers)) * (1 + int(compares)),  # raw and centered
        "baseline_files": compared_tracks if compares else 0,
        "baseline_audio_hours": round(hours, 2) if compares else 0.0,
        "sweep_layers": swept,
        "sweep_tracks": compared_tracks if swept else 0,
        "duplicate_tracks": duplicates,
    }


def _scratch_copy(cat: Core, folder: Path, track_ids: set[int] | None = None) -> None:
    """A copy of the catalog's database and settings in ``folder`` (empty), to change freely;
    with ``track_ids``, of those tracks only.

    The copy is always SQLite in ``folder``: a whole SQLite catalog is copied with SQLite's backup
    (consistent while others read or write), another database or a part table by table. The FAISS
    indexes (FAISS even for a catalog in Milvus) are built from the stored vectors when the copy
    first needs them.
    """
    if cat.store.engine.dialect.name == "sqlite" and track_ids is None:
        source = sqlite3.connect(cat.store.engine.url.database)  # wherever the manifest put it
        target = sqlite3.connect(folder / DATABASE)
        try:
            with target:
                source.backup(target)
        finally:
            source.close()
            target.close()
    else:
        copy = MetadataStore(default_database(folder))
        try:
            cat.store.copy_to(copy, track_ids=track_ids)
        finally:
            copy.close()
    # On FAISS files of its own: a copy that searched the catalog's Milvus collections would
    # rebuild them (drop and fill) with its own vectors.
    index = replace(cat.manifest.index, vector_store=None, collections=None)
    write_manifest(folder, replace(cat.manifest, database=None, index=index))
    if cat.manifest.transform.kind != "none":
        shutil.copy2(cat.directory / cat.manifest.transform.file, folder)
