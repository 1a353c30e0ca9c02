"""A catalog's vectors in Milvus (a server, or Milvus Lite in a local file).

Two collections, ``<prefix>_v<generation>_tracks`` and ``<prefix>_v<generation>_windows``, whose
primary keys are the database ids (track ids; window row ids), hold the transformed vectors as the
FAISS indexes would. Each vector carries its track's artist, album and genre (folded, see
mertsearch.text), year, duration and path, and a window its track's id, so filters run inside
Milvus as expressions (storage/milvus_filters.py).

Writers insert and delete as they commit, so readers and running servers search the current
vectors without loading anything. The database stays the source of truth: ``rebuild`` fills a
new generation of both collections from the stored vectors while readers go on searching the
one in use, then switches the database's pointer (GENERATION_KEY) to the new generation in one
write and drops the old one. Readers read the pointer before each search, so they never search a
half-built collection, and follow a switch at once. The meta key VERSION_KEY records the data
version the collections were built at, so vectors of an older kind (before a reindex changed the
layers or the transform) are never searched: a writer rebuilds them, a reader refuses.

A writer inserts into Milvus just after the database commits, so a writer killed between the two
(or stopped by a Milvus error) leaves the two apart. Each writer therefore records itself in the
meta table (WRITER_PREFIX: its host and pid) before its first change and takes the record out when
its operation ends without an error. The next writer that finds the record of one that is gone
(its pid has ended on this host, or the next writer holds the catalog alone) first brings the
collections in line with the database, ids checked both ways (``reconcile``).

Milvus Lite serves one process at a time (its file is locked): a server and an ingest against
the same catalog need a Milvus server.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import numpy as np

from mertsearch.errors import InvalidArgumentError, VectorStoreError
from mertsearch.storage.filters import Filters
from mertsearch.storage.lock import process_ended
from mertsearch.storage.milvus_filters import (
    NO_YEAR,
    PATH_LIMIT,
    TEXT_LIMIT,
    expression,
    ids_expression,
    tag_key,
)
from mertsearch.storage.records import chunks
from mertsearch.storage.schema import Track
from mertsearch.storage.store import MetadataStore
from mertsearch.storage.vector_index import FLAT, FLAT_LIMIT, VectorIndex, ivf_lists, probes_for
from mertsearch.storage.vector_store import TOKEN_VARIABLE
from mertsearch.storage.verify import id_problems, sample_ids, sampled_vectors
from mertsearch.text import FOLD_VERSION

NAMES = ("tracks", "windows")
# The generation of the collections searched: <prefix>_v<generation>_<name>. Absent: the
# collections of versions before generations, <prefix>_<name>.
GENERATION_KEY = "milvus_generation"
VERSION_KEY = "milvus_built_at"
# The text folding (mertsearch.text.FOLD_VERSION) of the collections' tag fields: collections built
# before it hold lowercased tags, so their searches filter by the ids the database allows instead.
FOLD_KEY = "milvus_text_fold"
WRITER_PREFIX = "milvus_writer:"  # + a writer's own id: it may have changed Milvus and not finished
log = logging.getLogger(__name__)
# milvus-lite asks for faiss-cpu, whose files would replace faiss-gpu's `faiss` (which serves it as well).
LITE_MISSING = (
    "Milvus Lite is not installed: pip install --no-deps 'milvus-lite==3.2.2' "
    "(--no-deps: it asks for faiss-cpu, which would replace the files of the faiss-gpu mertsearch uses)"
)
# Milvus returns at most this many neighbours a query.
MAX_LIMIT = 16384
BATCH = 2000
CHECKED = 200  # stored vectors verify compares with Milvus's
TEXT_FIELDS = ("artist", "album", "genre")
# Parameters in the URL's query that tune a search; the others tune the index build.
SEARCH_KEYS = frozenset({"nprobe", "ef", "search_list", "itopk_size", "search_width", "reorder_k"})
INDEX_KEY = "milvus_index_"  # + tracks/windows: the index a collection has, {"type", "build"}


def connect(url: str):
    """A MilvusClient for the store's URL (the token, for a server, from the environment)."""
    # gRPC's C core otherwise prints a notice each time the decoder workers fork.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise VectorStoreError("this catalog keeps its vectors in Milvus: pip install 'mertsearch[milvus]'") from None
    parts = urlsplit(url)
    lite = parts.scheme == "milvus"
    if lite and importlib.util.find_spec("milvus_lite") is None:
        raise VectorStoreError(LITE_MISSING)
    # Milvus Lite logs a whole traceback when another process holds its file; the error says it.
    lite_log = logging.getLogger("milvus_lite.server_manager")
    level = lite_log.level
    lite_log.setLevel(logging.CRITICAL)
    try:
        if lite:
            return MilvusClient(uri=parts.netloc + parts.path)
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        return MilvusClient(uri=base, token=os.environ.get(TOKEN_VARIABLE, ""))
    except Exception as exc:  # pymilvus raises its own classes (and gRPC's) for a refused connection
        reason = getattr(exc, "message", None) or str(exc)
        busy = " (Milvus Lite serves one process at a time: does another one have this file open?)" if lite else ""
        raise VectorStoreError(f"cannot open the Milvus vector store {url}: {reason}{busy}") from None
    finally:
        lite_log.setLevel(level)


@contextmanager
def milvus_errors(url: str) -> Iterator[None]:
    """Milvus's own exceptions (a lost server, a refused request) as VectorStoreError."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise VectorStoreError(f"the Milvus vector store {url} failed: {exc.message}") from None


def index_settings(url: str) -> tuple[str | None, dict, dict]:
    """(index type, build parameters, search parameters) the URL's query asks for, e.g.
    ``?index=HNSW&M=16&efConstruction=200&ef=64``; None: the automatic choice (see ``chosen``)."""
    query = parse_qs(urlsplit(url).query)
    asked = query.pop("index", [None])[-1]
    build, search = {}, {}
    for key, values in query.items():
        try:
            value = float(values[-1]) if "." in values[-1] else int(values[-1])
        except ValueError:
            raise InvalidArgumentError(f"the Milvus index parameter {key} takes a number, got {values[-1]!r}") from None
        (search if key in SEARCH_KEYS else build)[key] = value
    return (asked.upper() if asked else None), build, search


class MilvusStores:
    """The catalog's tracks and windows collections (see the module's doc)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        store: MetadataStore,
        *,
        dim: int,
        transform: Callable[[np.ndarray], np.ndarray],
        writing: Callable[[], bool] = lambda: True,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        """``writing``: this process holds the catalog's writer lock now; ``alone``: it holds it
        alone, so no other writer is at work (see the module's doc)."""
        self.url, self.store, self.dim, self.transform, self.writing = url, store, dim, transform, writing
        self.alone = alone
        self._writer_key: str | None = None
        self.client = connect(url)
        self.asked, self.build_params, self.search_params = index_settings(url)
        self.lite = urlsplit(url).scheme == "milvus"
        self.prefix = prefix
        self._generation: str | None = None
        self.names = _names(prefix, None)
        self._ready = False

    def chosen(self, count: int) -> tuple[str, dict]:
        """(index type, build parameters) for a collection of ``count`` vectors: what the URL asks
        for; else on a server Milvus's own choice (AUTOINDEX), and in Milvus Lite exact search
        (FLAT) below FLAT_LIMIT vectors, IVF_SQ8 with FAISS's lists for the size above."""
        if self.asked is not None:
            return self.asked, self.build_params
        if not self.lite:
            return "AUTOINDEX", {}
        return ("FLAT", {}) if count < FLAT_LIMIT else ("IVF_SQ8", {"nlist": ivf_lists(count)})

    def built(self, name: str) -> tuple[str, dict]:
        """(index type, build parameters) the collection was given, as the database records them."""
        recorded = self.store.meta(INDEX_KEY + name)
        if recorded is None:
            return self.chosen(0)
        index = json.loads(recorded)
        return index["type"], index["build"]

    def search_parameters(self, name: str) -> dict:
        """What a search passes Milvus: the URL's, else FAISS's probes for an IVF index's lists."""
        kind, build = self.built(name)
        if self.search_params or not kind.startswith("IVF"):
            return dict(self.search_params)
        return {"nprobe": probes_for(int(build.get("nlist", 128)))}

    def describe(self, name: str) -> str:
        """The collection's index, as `info` shows it."""
        kind, build = self.built(name)
        settings = {**build, **self.search_parameters(name)}
        return " ".join(["milvus", kind, *(f"{key}={value}" for key, value in settings.items())])

    def _ensure(self) -> None:
        """Both collections exist and hold vectors of the kind searched now, they are the
        generation the database points at (one meta row read: a rebuild may have switched since),
        and a writer is recorded as one (see the module's doc)."""
        generation = self.store.meta(GENERATION_KEY)
        if generation != self._generation:
            self._generation, self.names, self._ready = generation, _names(self.prefix, generation), False
        if not self._ready:
            self._prepare()
        if self._writer_key is None and self.writing():
            self._register()

    def _prepare(self) -> None:
        built = self.store.meta(VERSION_KEY)
        with milvus_errors(self.url):
            present = all(self.client.has_collection(name) for name in self.names.values())
            if not present or built is None or int(built) < self.store.searchable_since():
                if not self.writing():
                    if not present and self.store.count("tracks") == 0:
                        return  # a new catalog that no writer has filled: nothing to search yet
                    raise VectorStoreError(
                        "the catalog's Milvus collections are missing or hold vectors of an older kind: "
                        "run `mertsearch rebuild` (a `reindex` at work runs it itself when it ends)"
                    )
                self.rebuild()
            for name in self.names.values():  # a collection is searchable once loaded (in each process)
                self.client.load_collection(name)
        self._ready = True

    def _register(self) -> None:
        """Before this writer's first change: mend what writers that never finished left, then
        record this one (taken out by ``finished``)."""
        self._writer_key = WRITER_PREFIX + uuid.uuid4().hex
        left = self.unfinished()
        if left:
            mended = self.reconcile()
            log.warning("a writer did not finish; Milvus brought in line with the database: %s", mended or "nothing")
            self.store.delete_meta(left)
        self.store.update_meta({self._writer_key: json.dumps({"host": socket.gethostname(), "pid": os.getpid()})})

    def _gone(self, record: str) -> bool:
        """Whether the writer of this record is no longer at work."""
        if self.alone():
            return True
        try:
            writer = json.loads(record)
            host, pid = writer["host"], int(writer["pid"])
        except (ValueError, KeyError, TypeError):
            return True
        if host != socket.gethostname():
            return False  # it may be at work elsewhere; `repair` (which writes alone) settles it
        # This process's own: an earlier operation of it, which ended in an error.
        return pid == os.getpid() or process_ended(pid)

    def finished(self, ok: bool) -> None:
        """A writer's operation ended: when without an error, every change it made reached Milvus."""
        if self._writer_key is not None and ok:
            self.store.delete_meta([self._writer_key])
        self._writer_key = None

    def unfinished(self) -> list[str]:
        """The records of writers that are gone without finishing (see the module's doc)."""
        return [
            key
            for key, record in self.store.meta_keys(WRITER_PREFIX).items()
            if key != self._writer_key and self._gone(record)
        ]

    def reconcile(self) -> list[str]:
        """Bring both collections in line with the database: ids Milvus holds that the database
        no longer has are deleted; rows the database has that Milvus lacks are inserted, and with
        them the vector of each track whose windows were missing (a track stored again keeps its
        id). Milvus is read before the database, so a row another writer adds meanwhile is at
        worst inserted twice (an upsert), never deleted."""
        done = []
        stale_tracks: np.ndarray = np.empty(0, np.int64)
        for name in ("windows", "tracks"):
            held = self.collection(name).ids()
            stored = self.store.ids(name)
            extra, missing = np.setdiff1d(held, stored), np.setdiff1d(stored, held)
            if name == "windows":
                places = self.store.window_places(missing.tolist())
                stale_tracks = np.unique([track_id for track_id, _, _ in places.values()]).astype(np.int64)
            else:
                missing = np.union1d(missing, stale_tracks)
            if len(extra):
                self._delete(name, extra.tolist())
                done.append(f"deleted {len(extra)} {name} the database no longer has")
            for part in chunks(missing.tolist(), BATCH):
                ids, vectors = self.store.vectors_by_id(name, part)
                if len(ids):
                    fields = self._track_fields(ids) if name == "tracks" else self._window_fields(ids)
                    self._insert(name, ids, self.transform(vectors), fields)
            if len(missing):
                done.append(f"inserted {len(missing)} {name} from the database")
        self.save()
        return done

    def collection(self, name: str) -> MilvusCollection | VectorIndex:
        self._ensure()
        if not self._ready:  # see _prepare: an empty stand-in, until a writer makes the collections
            return VectorIndex(self.dim, FLAT)
        return MilvusCollection(self, name)

    @property
    def tracks(self) -> MilvusCollection:
        return self.collection("tracks")

    @property
    def windows(self) -> MilvusCollection:
        return self.collection("windows")

    def load(self) -> None:
        self._ensure()

    def save(self) -> None:
        """Seal what was inserted since (each change reached Milvus as it was committed, and is
        searched already): Milvus indexes sealed segments and scans growing ones whole, which
        Milvus Lite does about a hundred times slower (bench/milvus.py). A collection that
        outgrew its automatic exact index gets the approximate one its size calls for."""
        if not self._ready:
            return
        with milvus_errors(self.url):
            for name, collection in self.names.items():
                self.client.flush(collection)
                if self.asked is None and self.built(name)[0] == "FLAT":
                    count = self.store.count(name)
                    if self.chosen(count)[0] != "FLAT":
                        self._reindex(name, count)

    def _reindex(self, name: str, count: int) -> None:
        """Give the collection the index ``chosen`` for ``count`` vectors (it is searchable again
        once loaded with it: readers in other processes wait on Milvus Lite's file meanwhile)."""
        collection = self.names[name]
        self.client.release_collection(collection)
        for index in self.client.list_indexes(collection):
            self.client.drop_index(collection, index)
        self.store.update_meta(self._index(name, count, collection))

    def _index(self, name: str, count: int, collection: str) -> dict[str, str]:
        """Give the (released) collection the index ``chosen`` for ``count`` vectors, and load it;
        returns the meta record (INDEX_KEY) for the caller to write when the index is searched."""
        kind, build = self.chosen(count)
        params = self.client.prepare_index_params()
        # pymilvus sends each build parameter as a key of its own, which a server reads; Milvus Lite
        # reads only a "params" key holding them all (and would build its defaults).
        params.add_index("vector", index_type=kind, metric_type="IP", params={"params": build} if self.lite else build)
        # Milvus Lite builds the index as the collection loads; it cannot be waited on (sync).
        self.client.create_index(collection, params, sync=not self.lite)
        self.client.load_collection(collection)
        return {INDEX_KEY + name: json.dumps({"type": kind, "build": build})}

    def drop(self) -> None:
        """Drop the catalog's collections, every generation (its vectors moved to another store)."""
        self._drop_except(set())

    def _drop_except(self, kept: set[str]) -> None:
        """Drop this catalog's collections other than ``kept``: the generations before, and any
        that a rebuild stopped midway left."""
        own = re.compile(rf"{re.escape(self.prefix)}_(v\d+_)?({'|'.join(NAMES)})")
        with milvus_errors(self.url):
            for collection in self.client.list_collections():
                if own.fullmatch(collection) and collection not in kept:
                    self.client.drop_collection(collection)

    def rebuild(self, factory: str | None = None, *, shard_size: int | None = None, announce: bool = False) -> None:
        """Fill a new generation of both collections from the stored vectors, each with the index
        ``chosen`` for its size; then point the database at it and drop the generation before
        (see the module's doc). ``factory`` and ``shard_size`` (FAISS's) do not apply."""
        if announce:
            self.store.update_meta({}, bump_version=True)
        version = self.store.data_version()
        generation = str(int(self.store.meta(GENERATION_KEY) or "0") + 1)
        names = _names(self.prefix, generation)
        records = {}
        with milvus_errors(self.url):
            for name in NAMES:
                records |= self._create(name, names[name])
        for ids, vectors in self.store.track_vectors():
            self._insert("tracks", ids, self.transform(vectors), self._track_fields(ids), into=names["tracks"])
        for ids, vectors in self.store.window_vectors():
            self._insert("windows", ids, self.transform(vectors), self._window_fields(ids), into=names["windows"])
        with milvus_errors(self.url):
            for collection in names.values():
                self.client.flush(collection)  # sealed, so searched through the index (see save)
        # One write: readers switch from the whole old generation to the whole new one.
        self.store.update_meta(
            {GENERATION_KEY: generation, VERSION_KEY: str(version), FOLD_KEY: FOLD_VERSION, **records}
        )
        self._generation, self.names, self._ready = generation, names, True
        self._drop_except(set(names.values()))

    def _create(self, name: str, collection: str) -> dict[str, str]:
        """Make ``collection`` (left over by a rebuild that stopped midway: made again) with the
        index for the stored vectors' count; returns its meta record (INDEX_KEY)."""
        from pymilvus import DataType

        if self.client.has_collection(collection):
            self.client.drop_collection(collection)
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        if name == "windows":
            schema.add_field("track_id", DataType.INT64)
        for field in TEXT_FIELDS:
            schema.add_field(field, DataType.VARCHAR, max_length=TEXT_LIMIT)
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_LIMIT)
        schema.add_field("year", DataType.INT64)  # NO_YEAR for none: not nullable, as 2.3 servers need
        schema.add_field("duration", DataType.DOUBLE)
        self.client.create_collection(collection, schema=schema, consistency_level="Strong")
        return self._index(name, self.store.count(name), collection)

    def _track_fields(self, track_ids: Iterable[int]) -> dict[int, dict]:
        rows = self.store.tracks_by_id([int(i) for i in track_ids])
        return {track_id: _scalars(track) for track_id, track in rows.items()}

    def _window_fields(self, window_ids: np.ndarray) -> dict[int, dict]:
        places = self.store.window_places([int(i) for i in window_ids])
        tracks = self._track_fields({track_id for track_id, _, _ in places.values()})
        return {
            window_id: {"track_id": track_id, **tracks[track_id]}
            for window_id, (track_id, _, _) in places.items()
            if track_id in tracks
        }

    def _insert(
        self, name: str, ids: np.ndarray, vectors: np.ndarray, fields: dict[int, dict], *, into: str | None = None
    ) -> None:
        """Insert (or replace: upsert) the rows whose scalar fields are known; the others were
        taken out of the database meanwhile. ``into``: that collection, not the one searched."""
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [
            {"id": int(i), "vector": vector.tolist(), **fields[int(i)]}
            for i, vector in zip(ids, vectors, strict=True)
            if int(i) in fields
        ]
        with milvus_errors(self.url):
            for start in range(0, len(rows), BATCH):
                self.client.upsert(into or self.names[name], rows[start : start + BATCH])

    def stored(self, stored, vector: np.ndarray, window_vectors: np.ndarray) -> None:
        """A track put into the database (new, or replacing its older version under its id)."""
        self._ensure()
        if stored.replaced and stored.old_window_ids:
            self._delete("windows", stored.old_window_ids)
        fields = self._track_fields([stored.track_id])
        self._insert("tracks", np.array([stored.track_id]), self.transform(vector[None, :]), fields)
        windows = {int(i): {"track_id": stored.track_id, **fields[stored.track_id]} for i in stored.window_ids}
        if fields:
            self._insert("windows", np.array(stored.window_ids), self.transform(window_vectors), windows)

    def retagged(self, track_id: int) -> None:
        """A track's tags or path changed, not its vectors: its rows get the new scalar fields."""
        self._ensure()
        fields = self._track_fields([track_id])
        if not fields:
            return
        ids, vectors = self.store.vectors_by_id("tracks", [track_id])
        self._insert("tracks", ids, self.transform(vectors), fields)
        ids, vectors = self.store.vectors_by_id("windows", self.store.window_ids_of(track_id))
        windows = {int(i): {"track_id": track_id, **fields[track_id]} for i in ids}
        self._insert("windows", ids, self.transform(vectors), windows)

    def folded(self) -> bool:
        """Whether the collections' tag fields hold folded text (see FOLD_KEY)."""
        return self.store.meta(FOLD_KEY) == FOLD_VERSION

    def removed(self, track_id: int, window_ids: list[int]) -> None:
        self._ensure()
        self._delete("tracks", [track_id])
        self._delete("windows", window_ids)

    def _delete(self, name: str, ids: list[int]) -> None:
        with milvus_errors(self.url):
            for start in range(0, len(ids), BATCH):
                self.client.delete(self.names[name], ids=[int(i) for i in ids[start : start + BATCH]])

    def check(self) -> list[str]:
        """Problems between the database and the collections: ids checked both ways, and a sample
        of vectors against the stored ones (through the transform)."""
        try:
            self._ensure()
        except VectorStoreError as exc:
            return [str(exc)]
        if not self._ready:
            return []  # a new catalog that no writer has filled
        problems = []
        for name in NAMES:
            if not self.client.has_collection(self.names[name]):
                problems.append(f"the Milvus {name} collection is missing (rebuild it)")
                continue
            held, stored = self.collection(name).ids(), self.store.ids(name)
            problems += id_problems(name, held, stored, f"the Milvus {name} collection")
            problems += self._check_vectors(name, sample_ids(stored, CHECKED))
        built = self.store.meta(VERSION_KEY)
        if built is None or int(built) < self.store.searchable_since():
            problems.append("the Milvus collections hold vectors of an older kind than the database (rebuild them)")
        if self.unfinished():
            problems.append("a writer stopped without finishing: the next ingest or `repair` brings Milvus in line")
        return problems

    def mend(self) -> list[str]:
        """Put right what ``check`` finds, and no more (the caller holds the catalog alone); what
        was done, a line each. Collections missing or of an older kind are built again, both (one
        version records them); ids a collection and the database disagree on are reconciled; a
        collection whose sampled vectors differ from the stored ones, or that holds an id twice,
        is built again."""
        built = self.store.meta(VERSION_KEY)
        with milvus_errors(self.url):
            present = all(self.client.has_collection(name) for name in self.names.values())
        outdated = not present or built is None or int(built) < self.store.searchable_since()
        left = self.unfinished()
        self._ready = self._ready and not outdated
        # As a writer's first change does: builds collections missing or of an older kind, and
        # brings Milvus in line with the database after writers that did not finish.
        self._ensure()
        if outdated:
            return ["rebuilt both Milvus collections from the stored vectors (missing or of an older kind)"]
        done = [f"brought Milvus in line after {len(left)} writer(s) that did not finish"] if left else []
        broken, apart = {}, False
        for name in NAMES:
            held, stored = self.collection(name).ids(), self.store.ids(name)
            problems = self._check_vectors(name, sample_ids(stored, CHECKED))
            if len(held) != len(np.unique(held)):
                problems.append(f"the Milvus {name} collection holds ids twice")
            if problems:
                broken[name] = problems
            apart = apart or bool(id_problems(name, held, stored, ""))
        if broken:
            # A new generation holds both collections (see rebuild): searches never meet a half-built one.
            self.rebuild(announce=True)
            reasons = "; ".join(problem for problems in broken.values() for problem in problems)
            done.append(f"rebuilt both Milvus collections from the stored vectors ({reasons})")
        elif apart:  # ids a rebuild would have put right
            done += self.reconcile()
        return done

    def _check_vectors(self, name: str, ids: np.ndarray) -> list[str]:
        """Each of these stored vectors, transformed, must be what Milvus holds under its id."""
        ids, stored = sampled_vectors(name, self.store, ids, self.dim)
        if not len(ids):
            return []
        expected = self.transform(stored)
        with milvus_errors(self.url):
            held = self.client.get(self.names[name], ids=[int(i) for i in ids], output_fields=["vector"])
        vectors = {int(row["id"]): np.asarray(row["vector"], dtype=np.float32) for row in held}
        stale = sum(
            1
            for own, vector in zip(ids.tolist(), expected, strict=True)
            if own in vectors and float(vectors[own] @ vector) < 0.9999
        )
        return [f"{stale} of {len(ids)} sampled {name} vectors in Milvus differ from the stored ones"] if stale else []


class MilvusCollection:
    """One collection, searched as a FAISS index is (see storage/vector_store.VectorCollection);
    ``narrowed`` to the vectors a filter allows."""

    nprobe = 1
    lists = 1  # Milvus chooses what to scan: one round is all it takes
    lists_file = None

    def __init__(self, stores: MilvusStores, name: str, condition: str | None = None) -> None:
        self.stores, self.name, self.condition = stores, name, condition
        self.client, self.collection_name = stores.client, stores.names[name]
        self._count: int | None = None

    @property
    def factory(self) -> str:
        return self.stores.describe(self.name)

    def narrowed(self, allowed: np.ndarray, filters: Filters | None) -> MilvusCollection:
        """This collection's vectors of the allowed tracks only: the filters as an expression
        over the scalar fields where they can be written as one, else the allowed track ids."""
        condition = expression(filters) if filters and self.stores.folded() else None
        if condition is None:
            condition = ids_expression("id" if self.name == "tracks" else "track_id", allowed)
        return MilvusCollection(self.stores, self.name, condition)

    def __len__(self) -> int:
        if self._count is None:
            with milvus_errors(self.stores.url):
                rows = self.client.query(self.collection_name, filter=self.condition or "", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def probes(self, share: float = 1.0) -> int:
        return 1

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each shaped (queries, k), best first; -1 ids pad (at least one column,
        so a filter that allows nothing reads as a search that found nothing)."""
        k = max(1, min(k, MAX_LIMIT))
        condition = self.condition
        if allowed is not None:
            among = ids_expression("id", allowed)
            condition = among if condition is None else f"({condition}) and {among}"
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(queries) == 0 or (allowed is not None and len(allowed) == 0):
            return scores, ids
        try:
            found = self._search(queries, k, condition)
        except VectorStoreError:
            # A rebuild may have switched to its new generation, and dropped this one, since this
            # collection was handed out: the search runs again on the one in use now.
            current = self.stores.collection(self.name)
            if not isinstance(current, MilvusCollection) or current.collection_name == self.collection_name:
                raise
            self.collection_name = current.collection_name
            found = self._search(queries, k, condition)
        for row, hits in enumerate(found):
            for column, hit in enumerate(hits):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def _search(self, queries: np.ndarray, k: int, condition: str | None) -> list:
        with milvus_errors(self.stores.url):
            return self.client.search(
                self.collection_name,
                data=np.asarray(queries, dtype=np.float32).tolist(),
                limit=k,
                filter=condition or "",
                output_fields=["id"],
                search_params={"metric_type": "IP", "params": self.stores.search_parameters(self.name)},
            )

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.name == "tracks":
            fields = self.stores._track_fields(ids)
        else:
            fields = self.stores._window_fields(ids)
        self.stores._insert(self.name, ids, vectors, fields)

    def remove(self, ids: np.ndarray) -> None:
        self.stores._delete(self.name, [int(i) for i in ids])

    def ids(self) -> np.ndarray:
        """Every id held (under the collection's condition), read a range of ids at a time up to
        the database's highest (then whatever lies above). Not Milvus's query iterator, which
        Milvus Lite answers with errors in its log."""
        total = len(self)
        top = self.stores.store.id_range(self.name)[1]
        held: list[int] = []
        low = 0
        while len(held) < total and low <= top:  # a range of MAX_LIMIT ids holds at most MAX_LIMIT rows
            held += self._query(f"id >= {low} and id < {low + MAX_LIMIT}", MAX_LIMIT)
            low += MAX_LIMIT
        if len(held) < total:
            held += self._query(f"id >= {low} or id < 0", MAX_LIMIT)
        return np.array(sorted(held), dtype=np.int64)

    def _query(self, ids: str, limit: int) -> list[int]:
        condition = ids if self.condition is None else f"({self.condition}) and ({ids})"
        with milvus_errors(self.stores.url):
            rows = self.client.query(self.collection_name, filter=condition, output_fields=["id"], limit=limit)
        return [int(row["id"]) for row in rows]

    @property
    def high_water(self) -> int:
        held = self.ids()
        return int(held[-1]) if len(held) else -1


def _names(prefix: str, generation: str | None) -> dict[str, str]:
    """The collections of a generation (None: those made before generations)."""
    return {name: f"{prefix}_{name}" if generation is None else f"{prefix}_v{generation}_{name}" for name in NAMES}


def _scalars(track: Track) -> dict:
    return {
        **{field: tag_key(getattr(track, field)) for field in TEXT_FIELDS},
        "path": track.path[:PATH_LIMIT],
        "year": NO_YEAR if track.year is None else track.year,
        "duration": float(track.duration),
    }
