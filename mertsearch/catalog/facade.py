"""The public face of a catalog: each method checks what it is given and hands the work to the
module that does it (layout, ingest, query, lookups, maintenance)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mertsearch.catalog import ingest, lookups, maintenance, queries, radio
from mertsearch.catalog import text as text_search
from mertsearch.catalog.core import Core, adds, writes
from mertsearch.catalog.ingest import DECODE_TIMEOUT_S
from mertsearch.catalog.layout import find_or_make, one_of
from mertsearch.config import RaySettings, check_precision
from mertsearch.encoder.checkpoint import resolve_checkpoint
from mertsearch.errors import InvalidArgumentError
from mertsearch.indexer.pipeline import IndexProgress, IndexReport
from mertsearch.search import SearchResult
from mertsearch.search.options import SearchOptions
from mertsearch.settings import LayersArg

if TYPE_CHECKING:  # torch and transformers load only when audio is embedded, so `info` starts fast
    from mertsearch.audio.decode import AudioInput
    from mertsearch.encoder.pooling import Embedding

TrackRef = int | str | os.PathLike  # a track id, a numeric string, or the path of an indexed file


class Catalog(Core):
    """Index music and search it. Open one with :meth:`open` (or :meth:`create`)."""

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        *,
        model: str | None = None,
        layer: int | None = None,
        layers: LayersArg = None,
        keep_layers: bool = False,
        revision: str | None = None,
        hop: float | None = None,
        sample: float | None = None,
        create: bool = False,
        device: str | None = None,
        batch_size: int | None = None,
        precision: str | None = None,
        mmap: bool = False,
        database: str | None = None,
        vector_store: str | None = None,
        text: bool | str = False,
    ) -> Catalog:
        """Open the catalog in ``directory``; with ``create=True`` make it when it does not exist.

        ``text`` gives the catalog text search (see :meth:`enable_text`; a string names a local
        CLaMP 3 checkpoint directory): the next :meth:`index_paths` makes every track's text vector.

        ``database`` is the SQLAlchemy URL of the metadata database of a new catalog (default: the
        MERTSEARCH_DATABASE environment variable, else SQLite in the directory), e.g.
        ``postgresql+psycopg://user@host/dbname``. The manifest records it without its password
        (give that through PGPASSWORD or ~/.pgpass, or this URL again); an existing catalog is
        reopened with its own, and a different ``database`` is CatalogMismatchError.

        ``vector_store`` keeps a new catalog's vectors in Milvus instead of FAISS files:
        ``milvus:///path/milvus.db`` (Milvus Lite) or ``http(s)://host:19530`` (a server; its
        token in MERTSEARCH_MILVUS_TOKEN). The manifest records it; an existing catalog is
        reopened with its own, and a different one is CatalogMismatchError.

        ``layers`` is one hidden-state index, several (searched as the mean of their normalised
        vectors) or "all"; None means the model's default. ``keep_layers`` stores every layer's
        vectors too, so :meth:`reindex` can switch layers later without the model. Settings given
        for an existing catalog must match the ones it was built with, or CatalogMismatchError
        names each difference. ``sample`` embeds only that many seconds of each track, in
        windows spread evenly over it (much faster; clip search then finds only those parts).
        ``mmap`` maps saved indexes read-only instead of reading them,
        so a large catalog opens at once for searching (it cannot index then).

        ``device`` runs the model on "cpu" or "cuda" (default: cuda when there is one);
        ``batch_size`` is windows per model call (default: 32 on a GPU, 1 on a CPU);
        ``precision`` is "auto", "fp32", "bf16" or "fp16" (see MertEncoder); None: the
        MERTSEARCH_PRECISION environment variable, else "auto".
        """
        path = Path(directory).expanduser().absolute()
        manifest, checkpoint, url = find_or_make(
            path,
            create=create,
            shown=os.fspath(directory),
            checkpoint=resolve_checkpoint(model, revision=revision) if model else None,
            layers=one_of(layer, layers),
            keep_layers=keep_layers,
            hop=hop,
            sample=sample,
            revision=revision,
            database=database,
            vector_store=vector_store,
        )
        catalog = cls(
            path,
            manifest,
            checkpoint=checkpoint,
            device=device,
            batch_size=batch_size,
            precision=check_precision(precision),
            mmap=mmap,
            database=url,
        )
        if text and manifest.text is None:
            try:
                catalog.enable_text(None if text is True else str(text))
            except BaseException:
                catalog.close()
                raise
        return catalog

    @classmethod
    def create(cls, directory: str | os.PathLike, **settings) -> Catalog:
        """Open ``directory``, creating the catalog if needed (same arguments as :meth:`open`)."""
        return cls.open(directory, create=True, **settings)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # --- ingest -----------------------------------------------------------------------------

    @adds
    def index_paths(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        retry_failed: bool = False,
        progress: Callable[[IndexProgress], None] | None = None,
        decoders: int | None = None,
        decode_timeout_s: float = DECODE_TIMEOUT_S,
        ray: RaySettings | None = None,
        prune_empty: bool = False,
    ) -> IndexReport:
        """Add new audio files under ``paths``, re-embed changed ones, skip unchanged ones, and forget
        the tracks of files gone from the folders among ``paths``.

        A folder with tracks in the catalog but not a single audio file now is taken for a disk
        that is not mounted: nothing under it is removed (``report.empty_folders`` names it)
        unless ``prune_empty`` is set.

        ``decoders`` worker processes decode files while the model runs (default: one per core
        but one; 0 decodes in this process). A worker silent for ``decode_timeout_s`` seconds
        is stopped and its file recorded as failed. With ``ray`` the files are decoded and
        embedded on a Ray cluster instead (see mertsearch.indexer.distributed) and stored here.

        Once a catalog holds two files that could be copies of one recording, a run here (not on
        Ray) also copies excerpts of three of its tracks and embeds them, once, to set the limit
        of how close such copies lie (see mertsearch.indexer.copies).
        """
        return ingest.index_paths(
            self,
            paths,
            retry_failed=retry_failed,
            progress=progress,
            decoders=decoders,
            decode_timeout_s=decode_timeout_s,
            ray=ray,
            prune_empty=prune_empty,
        )

    @writes
    def enable_text(self, source: str | None = None) -> dict:
        """Give a catalog of MERT-v1-95M text search: its manifest names the CLaMP 3 checkpoint
        (``source``: a local directory; None: $MERTSEARCH_CLAMP3, else the hub's, at a pinned
        revision), and the next :meth:`index_paths` embeds every track again, once, to make its
        text vector (the stored vectors hold too little of the model's run to make it from them).
        Returns the manifest's "text" section."""
        return asdict(text_search.enable(self, source))

    @writes
    def remove(self, tracks: Sequence[TrackRef]) -> list[int]:
        """Take tracks (by id or path) out of the catalog; returns their ids. Files are not touched."""
        return ingest.remove(self, list(dict.fromkeys(self.track_id(track) for track in tracks)))

    def embed(
        self, source: AudioInput, *, start: float | None = None, end: float | None = None, probe: bool = False
    ) -> Embedding:
        """Vectors of any audio, processed exactly like the catalog's tracks. ``probe`` also embeds
        one window starting half a hop in (``Embedding.probes``), as :meth:`search` does, which
        places a clip in a track more exactly; it costs one more window of the model."""
        from mertsearch.audio.decode import stream_audio
        from mertsearch.encoder.embed import embed_chunks

        self.take_up_meta()
        chunks = stream_audio(source, sample_rate=self.encoder.sample_rate, start=start, end=end)
        return embed_chunks(self.encoder, chunks, self.windows, probe=probe)

    # --- queries: see SearchOptions for the options -------------------------------------------

    def search(
        self,
        query: AudioInput,
        options: SearchOptions | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        **fields,
    ) -> list[SearchResult]:
        """Tracks most similar to an audio clip (a path, encoded bytes, or a (samples, rate) pair)
        from ``start`` to ``end`` seconds. ``options`` (or their fields as keywords: ``k``,
        ``mode``, ``filters``, ``per_artist``, ``per_album``, ``min_score``, ``min_similarity``)
        say how; the default mode, "segments", finds a clip that is part of a long track. Each
        result's ``offset`` is where in the track the clip starts."""
        options = (options or SearchOptions()).changed(**fields)
        embedding = self.embed(query, start=start, end=end, probe=True)
        return queries.search_embedding(self, embedding, options)

    def search_text(
        self,
        text: str,
        options: SearchOptions | None = None,
        *,
        clip: AudioInput | None = None,
        start: float | None = None,
        end: float | None = None,
        **fields,
    ) -> list[SearchResult]:
        """Tracks that fit a description in words ("slow sad piano with rain"; about 100 languages),
        in a catalog with text search. ``options`` as :meth:`search` takes them, but whole tracks
        are ranked (no ``mode``); each result's ``similarity`` is the share of the catalog's
        tracks scoring lower for these words. With ``clip`` (from ``start`` to ``end`` s), the
        clip's own results are ranked again by the mean of their similarity to the clip and to
        the words (see mertsearch.catalog.text)."""
        options = (options or SearchOptions()).changed(**fields)
        self.take_up_meta()
        if clip is None:
            return text_search.search_text(self, text, options)
        text_search.needs_text(self)
        vector = self.text_model.text_vectors([text])[0]  # bad words are refused before the clip is decoded
        embedding = self.embed(clip, start=start, end=end, probe=True)
        return text_search.search_clip_text(self, embedding, vector, options)

    def search_embedding(
        self, embedding: Embedding, options: SearchOptions | None = None, **fields
    ) -> list[SearchResult]:
        """:meth:`search` with a clip already embedded (by :meth:`embed`, or the same model elsewhere).

        The embedding's ``vector`` and ``window_vectors`` must be of this catalog's searched layers,
        untransformed; the catalog's transform is applied here, as for any query. An embedding
        made with ``probe=True`` is placed as exactly as :meth:`search` places a clip.
        """
        options = (options or SearchOptions()).changed(**fields)
        self.take_up_meta()
        return queries.search_embedding(self, embedding, options)

    def similar(
        self, tracks: TrackRef | Sequence[TrackRef], options: SearchOptions | None = None, **fields
    ) -> list[SearchResult]:
        """Tracks most similar to one or more catalog tracks (by id or path); the seeds and the other
        files of their recordings are left out. Several seeds combine by agreement (each seed's
        own neighbours, fused: tracks near several seeds first; ``combine="average"``: the
        normalised mean of their vectors). The default mode is "tracks"; ``exclude_seed_artist``
        leaves out the seeds' artists; ``exclude``, ``no_repeat_artist``, ``no_repeat_album``,
        ``shuffle`` and ``seed`` continue a queue (see SearchOptions)."""
        options = (options or SearchOptions()).changed(**fields)
        return radio.similar(self, self._track_ids(tracks), options)

    def radio(
        self, history: TrackRef | Sequence[TrackRef], options: SearchOptions | None = None, **fields
    ) -> list[SearchResult]:
        """The next ``k`` tracks after a listening ``history`` (ids or paths, oldest first): similar
        to its last 3 tracks (by agreement), never one of the history (nor another file of one),
        and, unless ``options`` say otherwise, no artist of its last 3 tracks, no album of its
        last 5 and each artist once (``no_repeat_artist=3, no_repeat_album=5, per_artist=1``;
        where those leave fewer than k, the rest come without them). The options' ``exclude``
        leaves out more tracks."""
        options = (options or SearchOptions()).changed(**fields)
        tracks = [history] if isinstance(history, (int, str, os.PathLike)) else list(history)
        # Not made unique: a track played again is recent again.
        return radio.radio(self, lookups.track_ids(self, tracks), options)

    def path(
        self, start: TrackRef, end: TrackRef, count: int = 10, options: SearchOptions | None = None, **fields
    ) -> list[SearchResult]:
        """A song path of exactly ``count`` tracks from ``start`` to ``end`` (both included): each
        step aims at a point a little further along the way between the two (evenly spaced, in the
        catalog's searched space) and takes, of the 5 unused tracks nearest it, the nearest that
        comes closer to ``end`` than the step before, so it moves steadily from one to the other.
        ``filters``, ``exclude``, ``no_repeat_artist``, ``no_repeat_album``, ``per_artist`` and
        ``per_album`` choose the tracks between the ends; no recording comes twice. A result's
        score is its cosine with the track before it (the start's: 1). InvalidArgumentError when
        fewer than ``count`` - 2 tracks qualify."""
        options = (options or SearchOptions()).changed(**fields)
        return radio.path(self, self.track_id(start), self.track_id(end), count, options)

    def _track_ids(self, tracks: TrackRef | Sequence[TrackRef]) -> list[int]:
        """Ids of one track or several, each once, in the order given."""
        tracks = [tracks] if isinstance(tracks, (int, str, os.PathLike)) else list(tracks)
        return list(dict.fromkeys(lookups.track_ids(self, tracks)))

    @property
    def sampled_note(self) -> str | None:
        """What a clip search should say in a catalog that holds only samples of its tracks."""
        return lookups.sampled_note(self)

    # --- lookups ------------------------------------------------------------------------------

    def track_id(self, track: TrackRef) -> int:
        """The id of a track given by id, by a numeric string, or by its path."""
        return lookups.track_id(self, track)

    def track(self, track: TrackRef) -> dict:
        """Everything known about one track: tags, duration, and other files of its recording."""
        return lookups.track(self, self.track_id(track))

    def find_tracks(self, text: str = "", *, limit: int = 50, offset: int = 0) -> dict:
        """Tracks whose title, artist, album or path contains ``text``: {"total", "tracks"}."""
        return lookups.find_tracks(self, text, limit=limit, offset=offset)

    def duplicates(self) -> list[dict]:
        """Groups of files that hold the same recording: the leading track and the others."""
        return lookups.duplicates(self)

    def failures(self) -> list[dict]:
        return [{"path": f.path, "reason": f.reason} for f in self.store.failures()]

    def info(self) -> dict:
        """Counts, settings and sizes, for `mertsearch info`."""
        return lookups.info(self)

    # --- maintenance, from stored vectors (no model) -------------------------------------------

    @writes
    def rebuild_index(
        self, factory: str | None = None, *, shard_size: int | None = None, vector_store: str | None = None
    ) -> None:
        """Build the FAISS indexes (or the Milvus collections) again from the stored vectors and save them.

        ``factory`` sets the index kind from now on: "auto" (by size) or a FAISS factory string.
        Inverted files ("IVF...") too big for one shard are built in shards, merged on disk;
        ``shard_size`` forces that, with shards of that many vectors. ``vector_store`` moves the
        vectors to another store: a Milvus URL (as for :meth:`open`), or "faiss" for FAISS files;
        the old store's are dropped once the new ones are built and the manifest names them.
        """
        maintenance.rebuild_index(self, factory, shard_size=shard_size, vector_store=vector_store)

    @writes
    def reindex(self, *, layer: int | None = None, layers: LayersArg = None, transform: str | None = None) -> dict:
        """Switch the searched layers and/or the centering, from stored vectors.

        Other layers need a catalog that keeps every layer (``keep_layers``). ``transform`` is
        "none", "center" or "whiten", fitted on the catalog's track vectors; a transform in place
        is fitted again when the layers change. Returns what changed, with the spread of the
        scores between random pairs of tracks before and after.
        """
        return maintenance.reindex(self, one_of(layer, layers), transform)

    def verify(self) -> list[str]:
        """Problems found between the manifest, the database, the indexes and the stored vectors."""
        return maintenance.verify(self)

    @writes
    def repair(self, *, full: bool = False) -> list[str]:
        """Fix what can be fixed from the stored data; returns what was done (nothing for a
        healthy catalog).

        Only what :meth:`verify`'s checks find wrong is done: an index rebuilt when it is missing or
        differs from the database, Milvus's ids reconciled, duplicate links decided again when
        groups were mended or the duplicate limit no longer fits the catalog. ``full`` rebuilds
        both indexes and decides every link again whatever the checks say.
        """
        return maintenance.repair(self, full=full)

    def tune_layers(
        self,
        labels: dict[str, str] | None = None,
        *,
        exclude_same_artist: bool = False,
        exclude_same_album: bool = False,
        k: int = 10,
    ) -> dict:
        """Label retrieval (precision@k, mAP, nDCG@k) for every stored layer, raw and centered; the best layer.

        ``labels`` maps track paths (or "#<id>") to labels; without it a track's label is the
        name of its folder. Runs on stored vectors only: no model, seconds for thousands of tracks.
        """
        from mertsearch.evaluation.evaluate import tune_layers

        return tune_layers(
            self, labels, exclude_same_artist=exclude_same_artist, exclude_same_album=exclude_same_album, k=k
        )

    def evaluation_plan(self, *, excerpts: int = 50, baseline: bool = True, duplicates: int = 5) -> dict:
        """What :meth:`evaluate` with these settings will do on this catalog, counted before it
        starts (to say what a long evaluation holds): tracks, excerpts, searches (each degraded
        excerpt by the catalog, the baseline and each kept layer), label retrieval queries (at
        most 2,000) and rankings, files the baseline indexes again and their hours of audio,
        kept layers swept and the tracks of the copy they are swept on, tracks copied for
        duplicate detection."""
        return maintenance.evaluation_plan(self, excerpts=excerpts, baseline=baseline, duplicates=duplicates)

    def evaluate(
        self,
        *,
        excerpts: int = 50,
        seconds: float = 10.0,
        seed: int = 0,
        k: int = 10,
        labels: dict[str, str] | None = None,
        exclude_same_artist: bool = False,
        exclude_same_album: bool = False,
        baseline: bool = True,
        duplicates: int = 5,
    ) -> dict:
        """How good the search is on this catalog, seeded: excerpt identification (clean and
        degraded, for each kept layer too), label retrieval per stored layer, score spreads, and
        with ``baseline`` the spectral baseline on the same excerpts; duplicate detection on
        copies of ``duplicates`` tracks, six copies each (0 skips it). See
        :func:`mertsearch.catalog.maintenance.evaluate` for what each part costs."""
        if duplicates < 0:
            raise InvalidArgumentError(f"duplicates must be 0 or more tracks, got {duplicates}")
        SearchOptions(k=k)  # checks k before the work starts
        return maintenance.evaluate(
            self,
            excerpts=excerpts,
            seconds=seconds,
            seed=seed,
            k=k,
            labels=labels,
            exclude_same_artist=exclude_same_artist,
            exclude_same_album=exclude_same_album,
            baseline=baseline,
            duplicate_tracks=duplicates,
        )
