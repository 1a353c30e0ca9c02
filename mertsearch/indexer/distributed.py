"""Ingest on a Ray cluster: the local executor's reader and model code, run as Ray Data stages.

- a CPU stage runs :func:`mertsearch.indexer.reader.read_track` on each file (one task per file,
  so a decoder that crashes a worker loses that file only), yielding its messages as rows;
- an actor pool embeds the windows rows (one actor per GPU, or CPU actors), keeping the order-free
  rows small: raw per-layer means instead of samples;
- this process writes every batch it receives as a shard file (Parquet, written then renamed)
  before ingesting the tracks it completes, through the same ``run_index`` bookkeeping as a local
  run. A run that stops midway leaves its shards; the next run takes the tracks they complete from
  them instead of embedding the files again. Tracks are keyed by path, size and mtime, and a file
  already stored is never a job, so a repeated or partial shard cannot duplicate a track. The
  shards are deleted once a run has ingested everything.

Every node needs the audio files and the model weights at the paths this process sees (a shared
filesystem), and mertsearch installed with the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mertsearch.config import EncoderSpec, RaySettings
from mertsearch.encoder.embed import assemble
from mertsearch.encoder.pooling import captured_layers
from mertsearch.encoder.runtime import default_batch_size, open_catalog_encoder
from mertsearch.errors import ClusterError, InvalidArgumentError
from mertsearch.indexer.pipeline import Embedded, Failed, Job, Outcome, Unchanged
from mertsearch.indexer.reader import FINAL, WINDOWS_PER_MESSAGE, read_track

SHARD_PREFIX = "part-"
# In a run's shard folder: the layers its means hold (a catalog that gained text search computes more).
CAPTURE = "capture.json"
# A file whose decoding task died (a crash in a native decoder, after Ray's retry) has no rows.
LOST = "decoding crashed on a Ray worker (the task died on every try)"
# Reserved per decoding task: torch and FFmpeg loaded (~0.6 GB measured), 20 s of audio, a few messages.
DECODE_MEMORY = 2**30


@dataclass(frozen=True)
class _Shape:
    """What :func:`mertsearch.encoder.embed.assemble` needs of an encoder, from the catalog's manifest."""

    sample_rate: int
    capture: tuple[int, ...]
    layers: tuple[int, ...]
    keep_all: bool
    text: Any = None  # CLaMP 3's towers, in the driver, for a catalog with text search

    @classmethod
    def of(cls, spec: EncoderSpec, text=None) -> _Shape:
        every = range(spec.num_layers + 1) if text is not None else spec.kept_layers
        capture = captured_layers(spec.layers, every)
        return cls(spec.sample_rate, capture, tuple(spec.layers), bool(spec.kept_layers), text)


@dataclass
class RayRun:
    """What the run found out about the model side, for the report."""

    device: str = ""
    precision: str = ""
    actors: int = 0
    from_shards: int = 0  # tracks taken from an earlier run's shards
    shards_written: int = 0


def _ray():
    try:
        import ray
        import ray.data
        import ray.exceptions
    except ImportError as exc:
        raise InvalidArgumentError("--executor ray needs Ray: pip install 'mertsearch[ray]'") from exc
    return ray


def _key(path: str, size: int, mtime_ns: int) -> tuple[bytes, int, int]:
    return os.fsencode(path), int(size), int(mtime_ns)


def _known(text: str) -> tuple[str, str | None] | None:
    """A job's ``known`` hashes from their text in a row ("sha256:audio_sha256", "" for none)."""
    if not text:
        return None
    digest, _, audio = text.partition(":")
    return digest, audio or None


def _known_text(known: tuple[str, str | None] | None) -> str:
    return "" if known is None else f"{known[0]}:{known[1] or ''}"


def _decode(batch: dict[str, np.ndarray], *, sample_rate: int, windows, text_tail: bool) -> Iterator[dict[str, list]]:
    """The CPU stage: one file's reader messages as rows (all rows share one schema)."""
    path, size, mtime_ns, known = (batch[name][0] for name in ("path", "size", "mtime_ns", "known"))
    messages = read_track(
        os.fsdecode(path), _known(known), sample_rate=sample_rate, windows=windows, text_tail=text_tail
    )
    # A file moved here is embedded again on Ray: its driver never sees the identity to look it up.
    for seq, message in enumerate(m for m in messages if m[0] != "identity"):
        row = {
            "path": path,
            "size": int(size),
            "mtime_ns": int(mtime_ns),
            "seq": seq,
            "kind": message[0],
            "starts": [],
            "length": 0,
            "samples": b"",
            "sha256": "",
            "audio": "",
            "total": 0,
            "tags": "",
            "reason": "",
        }
        if message[0] == "windows":
            _, starts, samples = message
            row.update(starts=list(starts), length=samples.shape[1], samples=samples.astype(np.float32).tobytes())
        elif message[0] == "done":
            _, digest, audio, total, tags = message
            row.update(sha256=digest, audio=audio or "", total=int(total), tags=json.dumps(tags))
        elif message[0] == "same":
            _, digest, audio, tags = message
            row.update(sha256=digest, audio=audio or "", tags=json.dumps(tags))
        else:  # JSON keeps a reason naming a path that is not UTF-8 (Arrow strings must be)
            row.update(reason=json.dumps(message[1]))
        yield {name: [value] for name, value in row.items()}


class _Embedder:
    """The model stage: an actor holding the catalog's encoder on its GPU (or CPU)."""

    def __init__(self, spec: EncoderSpec, model: dict) -> None:
        # The driver's checkpoint folder is used where this node has it too; the weights found are
        # checked against the catalog's either way.
        self.encoder = open_catalog_encoder(
            spec,
            directory=model["directory"],
            batch_size=model["batch_size"],
            precision=model["precision"],
            where="this Ray node",
            every_layer=model.get("every_layer", False),
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        samples = batch.pop("samples")
        lengths = batch["length"]
        means = [b""] * len(samples)
        # One model call per window length (short tracks have windows of their own length).
        for length in {int(n) for n, kind in zip(lengths, batch["kind"], strict=True) if kind == "windows"}:
            rows = [i for i, kind in enumerate(batch["kind"]) if kind == "windows" and lengths[i] == length]
            stacked = np.concatenate([np.frombuffer(samples[i], np.float32).reshape(-1, length) for i in rows])
            out = self.encoder.embed_windows(stacked)
            counts = np.cumsum([len(samples[i]) // (4 * length) for i in rows])[:-1]
            for i, part in zip(rows, np.split(out, counts), strict=True):
                means[i] = part.astype(np.float32).tobytes()
        batch["means"] = np.array(means, dtype=object)
        batch["device"] = np.array([str(self.encoder.device)] * len(samples))
        batch["precision"] = np.array([self.encoder.precision] * len(samples))
        return batch


@dataclass
class _Pending:
    windows: list[tuple[int, list[int], int, bytes]] = field(default_factory=list)  # (seq, starts, length, means)
    final: dict | None = None

    def complete(self) -> bool:
        return self.final is not None and len(self.windows) == self.final["seq"]


def _outcome(pending: _Pending, shape: _Shape) -> Outcome:
    final = pending.final
    if final["kind"] == "same":
        return Unchanged(final["sha256"], final["audio"] or None, json.loads(final["tags"] or "null"))
    if final["kind"] == "failed":
        return Failed(json.loads(final["reason"]))
    parts = sorted(pending.windows)
    starts = np.array([start for _, starts, _, _ in parts for start in starts], dtype=np.int64)
    lengths = np.array([length for _, starts, length, _ in parts for _ in starts], dtype=np.int64)
    means = np.concatenate(
        [np.frombuffer(blob, np.float32).reshape(len(starts_), len(shape.capture), -1) for _, starts_, _, blob in parts]
    )
    embedding = assemble(shape, starts, lengths, means, final["total"])
    return Embedded(embedding, json.loads(final["tags"]), final["sha256"], final["audio"] or None)


def _rows(table) -> Iterator[dict]:
    names = [
        "path",
        "size",
        "mtime_ns",
        "seq",
        "kind",
        "starts",
        "length",
        "means",
        "sha256",
        "audio",
        "total",
        "tags",
        "reason",
    ]
    # Shards of an earlier version have no audio hash: the track is stored without one, learnt later.
    columns = [
        table.column(name).to_pylist() if name in table.column_names else [""] * table.num_rows for name in names
    ]
    for values in zip(*columns, strict=True):
        yield dict(zip(names, values, strict=True))


class _Collector:
    """Rows of any files in any order -> (job, outcome) for each job once all its file's rows are in.

    Rows of files that are not (or no longer) jobs are dropped: a track already stored, or a file
    changed since an earlier run wrote them."""

    def __init__(self, shape: _Shape, jobs: Iterable[Job]) -> None:
        self.shape = shape
        self.todo = {_key(job.path, job.size, job.mtime_ns): job for job in jobs}
        self.pending: dict[tuple, _Pending] = {}

    def finished(self, rows: Iterable[dict]) -> Iterator[tuple[Job, Outcome]]:
        for row in rows:
            key = (row["path"], row["size"], row["mtime_ns"])
            if key not in self.todo:
                continue
            pending = self.pending.setdefault(key, _Pending())
            if row["kind"] == "windows":
                pending.windows.append((row["seq"], list(row["starts"]), row["length"], row["means"]))
            elif row["kind"] in FINAL:
                pending.final = row
            if pending.complete():
                del self.pending[key]
                yield self.todo.pop(key), _outcome(pending, self.shape)


def _write_shard(folder: Path, number: int, table) -> None:
    import pyarrow.parquet as pq

    final = folder / f"{SHARD_PREFIX}{number:06d}.parquet"
    temporary = final.with_suffix(".tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, final)


def _claim(folder: Path) -> IO | None:
    """Hold ``folder`` for this run (an open file locked until it is closed), or None if another
    run holds it: on PostgreSQL several index runs may share one catalog directory."""
    handle = open(folder / ".lock", "a")  # noqa: SIM115 - held for the run, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _earlier_runs(root: Path, capture: tuple[int, ...], before: tuple[int, ...]) -> dict[Path, IO]:
    """The shard folders of runs that stopped before ingesting them all, claimed for this run. A
    run that computed other layers (before the catalog gained text search) is of no use: its
    folder is emptied, and its files embedded again. ``before``: the layers of a run that did not
    say (one of an older version, which had no text search)."""
    claimed = {}
    for folder in sorted(root.glob("run-*")) if root.is_dir() else []:
        if (handle := _claim(folder)) is not None:
            for stray in folder.glob("*.tmp"):  # a shard being written when its run stopped
                stray.unlink(missing_ok=True)
            written = folder / CAPTURE
            if (tuple(json.loads(written.read_text())) if written.is_file() else before) != capture:
                for shard in folder.glob(f"{SHARD_PREFIX}*.parquet"):
                    shard.unlink()
            claimed[folder] = handle
    return claimed


def embed_on_ray(
    jobs: Iterable[Job],
    *,
    spec: EncoderSpec,
    model: dict,
    windows,
    shards: Path,
    settings: RaySettings,
    run: RayRun,
    text=None,
) -> Iterator[tuple[Job, Outcome]]:
    """(job, outcome) for every job, like the local executor's ``embed_jobs``, computed on Ray.

    ``spec`` is the catalog manifest's encoder part; ``model`` the rest an actor needs to open the
    encoder: {"directory": where this process found the weights, "batch_size", "precision"} (None
    for the defaults); ``shards`` the folder for this catalog's shard files. ``text``: CLaMP 3's
    towers, for a catalog with text search: the actors compute every layer, and the text vectors
    are made here from their means.
    """
    import pyarrow.parquet as pq

    shape = _Shape.of(spec, text)
    model = {**model, "every_layer": text is not None}
    collector = _Collector(shape, jobs)
    held = _earlier_runs(shards, shape.capture, _Shape.of(spec).capture)
    try:
        for shard in sorted(shard for folder in held for shard in folder.glob(f"{SHARD_PREFIX}*.parquet")):
            for job, outcome in collector.finished(_rows(pq.read_table(shard))):
                run.from_shards += 1
                yield job, outcome
        collector.pending.clear()  # files an earlier run did not finish: embedded again
        if collector.todo:
            folder = shards / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            folder.mkdir(parents=True, exist_ok=True)
            held[folder] = _claim(folder)
            (folder / CAPTURE).write_text(json.dumps(list(shape.capture)))
            dataset = _dataset(collector.todo.values(), spec, model, windows, settings, run, text is not None)
            for table in _results(dataset):
                _write_shard(folder, run.shards_written, table)
                run.shards_written += 1
                if not run.device and table.num_rows:
                    run.device = table.column("device")[0].as_py()
                    run.precision = table.column("precision")[0].as_py()
                yield from collector.finished(_rows(table))
            for job in list(collector.todo.values()):
                yield job, Failed(LOST)
        # Everything is stored: the shards are no longer needed.
        for folder in held:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            shards.rmdir()  # unless another run is using it
    finally:
        for handle in held.values():
            handle.close()


def _results(dataset) -> Iterator:
    """The dataset's batches as Arrow tables; a failure on the cluster as one line that says why."""
    import ray.exceptions

    try:
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    except ray.exceptions.RayError as exc:
        # Ray wraps the node's traceback; ours (e.g. weights that are not the catalog's) is in it.
        ours = re.findall(r"mertsearch\.errors\.\w+: (.+)", str(exc))
        why = ours[-1] if ours else f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        raise ClusterError(f"the Ray run failed: {why} (the shards written so far are kept for the next run)") from None


def _dataset(
    jobs: Iterable[Job],
    spec: EncoderSpec,
    model: dict,
    windows,
    settings: RaySettings,
    run: RayRun,
    text_tail: bool = False,
):
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=settings.address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {settings.address or 'RAY_ADDRESS'}: {exc} (is it running, "
                "with this Ray version? with token authentication, give its token in RAY_AUTH_TOKEN)"
            ) from None
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notices would break the progress line
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = -1  # a file whose task died is reported failed; the others go on
    gpus = int(ray.cluster_resources().get("GPU", 0))
    run.actors = settings.actors or max(1, gpus)
    items = [
        {"path": os.fsencode(job.path), "size": job.size, "mtime_ns": job.mtime_ns, "known": _known_text(job.known)}
        for job in jobs
    ]
    batch_size = model["batch_size"] or default_batch_size("cuda" if gpus else "cpu")
    rows_per_call = max(1, -(-batch_size // WINDOWS_PER_MESSAGE))
    # One block per file: a task that dies takes only its file with it (after Ray's retries). The
    # memory reserved also keeps Ray from fusing decoding into the model's actors (fusion needs
    # equal resources): decoding must not queue up on the GPU workers.
    return (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            _decode,
            batch_size=1,
            fn_kwargs={"sample_rate": spec.sample_rate, "windows": windows, "text_tail": text_tail},
            num_cpus=1,
            memory=DECODE_MEMORY,
        )
        .map_batches(
            _Embedder,
            fn_constructor_kwargs={"spec": spec, "model": model},
            batch_size=rows_per_call,
            compute=ray.data.ActorPoolStrategy(size=run.actors),
            **({"num_gpus": 1} if gpus else {"num_cpus": 1}),
        )
    )
