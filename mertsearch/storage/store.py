"""The metadata store: the source of truth for tracks, windows, vectors and failures."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from sqlalchemy import create_engine, delete, event, func, insert, or_, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from mertsearch.errors import DatabaseError
from mertsearch.storage import text_index
from mertsearch.storage.links import DuplicateLinks, lock_links
from mertsearch.storage.records import StoredTrack, TrackRecord, chunks, from_blob, safe_url, to_blob
from mertsearch.storage.schema import Base, Failure, Meta, TextVector, Track, Window
from mertsearch.storage.upgrade import upgrade
from mertsearch.storage.vector_rows import VectorRows, id_column
from mertsearch.text import fold

# Incremented in the same transaction as every change to the vectors, so a saved FAISS index
# can say which state of the database it reflects.
DATA_VERSION = "data_version"
# The data version from which the stored searchable vectors mean what they mean now (the layers or
# the transform changed then): an index saved before it holds vectors of another kind.
SEARCHABLE_SINCE = "searchable_since"
# The data version of the last change that took vectors out (a track removed or stored again, stray
# windows deleted): an index saved at or after it needs only the rows added since (see Indexes).
REMOVED_AT = "removed_at"
# Key of the PostgreSQL advisory lock held while the tables are created (two writers may start at once).
SCHEMA_LOCK = 0x6D657274
# A write that lost a race with another writer (the same path inserted twice, a row deleted under it,
# a deadlock) is tried again this many times; it then finds the other writer's rows.
WRITE_ATTEMPTS = 5
# PostgreSQL's SQLSTATEs of transactions that may simply be run again.
_RETRY_STATES = {"40001", "40P01"}  # serialization failure, deadlock

T = TypeVar("T")
# Imported from here by the rest of the package.
__all__ = ["MetadataStore", "StoredTrack", "TrackRecord", "from_blob", "safe_url"]


def _detach(session: Session, track_id: int) -> None:
    """Take a track out of its duplicate group; if it led the group, the next-oldest member leads."""
    lock_links(session)
    members = list(session.scalars(select(Track.id).where(Track.duplicate_of == track_id).order_by(Track.id)))
    if members:
        leader, rest = members[0], members[1:]
        session.execute(update(Track).where(Track.id == leader).values(duplicate_of=None))
        if rest:
            session.execute(update(Track).where(Track.id.in_(rest)).values(duplicate_of=leader))
    session.execute(update(Track).where(Track.id == track_id).values(duplicate_of=None))


def _insert_missing(session: Session, table):
    """INSERT that does nothing when the row is there already (another writer was first)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Paths are case-sensitive, as in PostgreSQL and Milvus (SQLite's LIKE folds ASCII otherwise);
    # text look-ups compare folded copies, never LIKE's folding.
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, (IntegrityError, StaleDataError)):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRY_STATES


class MetadataStore(VectorRows, DuplicateLinks):
    """Tracks, windows and failures in a SQL database reached through a SQLAlchemy URL.

    SQLite (one file, one writer at a time) or a server database such as PostgreSQL
    (``postgresql+psycopg://user@host/dbname``), which several writers may share: every write
    is one transaction, tried again when it loses a race with another writer.
    """

    def __init__(self, url: str | URL) -> None:
        shown = safe_url(url) if isinstance(url, URL) or "://" in str(url) else str(url)
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=make_url(url).get_backend_name() != "sqlite")
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise DatabaseError(f"{shown} is not a database URL this program can use ({exc})") from None
        except ModuleNotFoundError as exc:
            raise DatabaseError(
                f"the driver for {shown} is not installed ({exc.name}); "
                "for PostgreSQL: pip install 'mertsearch[postgres]'"
            ) from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
                Base.metadata.create_all(connection)
                upgrade(connection)
                self._text_indexed = text_index.ensure(connection)
        except DBAPIError as exc:
            self.engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseError(f"cannot use the database {shown}: {reason}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def copy_to(self, other: MetadataStore, batch: int = 1000, *, track_ids: Sequence[int] | None = None) -> None:
        """Every row of every table into ``other`` (empty, any database), a batch at a time; with
        ``track_ids``, of the tracks only those and their windows (no failures), and a track whose
        group leader is left out leads itself."""
        kept = None if track_ids is None else {int(i) for i in track_ids}
        with self.engine.connect() as source, other.engine.begin() as target:
            target.execute(delete(Meta))  # what opening it wrote (the folding's version): the source's instead
            for table in Base.metadata.sorted_tables:
                parts = [select(table)]
                if kept is not None and table.name == "failures":
                    continue
                if kept is not None and table.name in ("tracks", "windows", "text_vectors"):
                    column = table.c.id if table.name == "tracks" else table.c.track_id
                    parts = [select(table).where(column.in_(chunk)) for chunk in chunks(sorted(kept))]
                for query in parts:
                    rows = source.execution_options(yield_per=batch).execute(query)
                    for part in rows.mappings().partitions():
                        rows_out = [dict(row) for row in part]
                        if kept is not None and table.name == "tracks":
                            for row in rows_out:
                                if row["duplicate_of"] not in kept:
                                    row["duplicate_of"] = None
                        target.execute(table.insert(), rows_out)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    def _write(self, change: Callable[[Session], T]) -> T:
        """Run ``change`` in one transaction; again when it lost a race with another writer."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.session() as session, session.begin():
                    return change(session)
            except Exception as exc:
                if not _retryable(exc) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    # --- versions -------------------------------------------------------------------------

    def data_version(self) -> int:
        with self.session() as session:
            row = session.get(Meta, DATA_VERSION)
            return int(row.value) if row else 0

    def searchable_since(self) -> int:
        """The data version since which the searchable vectors are of their present kind (see SEARCHABLE_SINCE)."""
        value = self.meta(SEARCHABLE_SINCE)
        return int(value) if value else 0

    def removed_at(self) -> int:
        """The data version of the last change that took vectors out (see REMOVED_AT)."""
        value = self.meta(REMOVED_AT)
        return int(value) if value else 0

    @staticmethod
    def _bump_version(session: Session, *, searchable_changed: bool = False, removed: bool = False) -> None:
        # Locked for the rest of the transaction, so concurrent writers count one after the other.
        row = session.get(Meta, DATA_VERSION, with_for_update=True)
        if row is None:
            session.execute(_insert_missing(session, Meta).values(key=DATA_VERSION, value="0"))
            row = session.get(Meta, DATA_VERSION, with_for_update=True, populate_existing=True)
        row.value = str(int(row.value) + 1)
        if searchable_changed:
            session.merge(Meta(key=SEARCHABLE_SINCE, value=row.value))
        if removed or searchable_changed:
            session.merge(Meta(key=REMOVED_AT, value=row.value))

    # --- tracks ---------------------------------------------------------------------------

    def track_by_path(self, path: str) -> Track | None:
        with self.session() as session:
            return session.scalars(select(Track).where(Track.path == path)).first()

    def tracks_by_id(self, ids: Sequence[int]) -> dict[int, Track]:
        with self.session() as session:
            return {
                row.id: row
                for chunk in chunks(ids)
                for row in session.scalars(select(Track).where(Track.id.in_(chunk)))
            }

    def present_track_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` that are tracks' (their rows not read)."""
        with self.session() as session:
            return {i for chunk in chunks(ids) for i in session.scalars(select(Track.id).where(Track.id.in_(chunk)))}

    def durations_of(self, ids: Sequence[int]) -> dict[int, float]:
        """{track id: seconds} of those of ``ids`` that are tracks' (their rows not read)."""
        with self.session() as session:
            return {
                track_id: duration
                for chunk in chunks(ids)
                for track_id, duration in session.execute(select(Track.id, Track.duration).where(Track.id.in_(chunk)))
            }

    def put_track(self, record: TrackRecord) -> StoredTrack:
        """Insert or replace the track at ``record.path``.

        A re-embedded file keeps its track id, so ids users have seen stay valid. Its duplicate
        links start again (a group it led passes to the next-oldest member), unless
        ``record.duplicate_of`` is its own id: it still holds the recording it leads, and the
        other files stay linked to it.
        """
        return self._write(lambda session: self._put_track(session, record))

    def _put_track(self, session: Session, record: TrackRecord) -> StoredTrack:
        leader = record.duplicate_of
        if leader is not None:
            # Decided before this transaction: the leader may have been linked to another track
            # since (a relink of another writer), whose file then leads this one too, never a chain.
            lock_links(session)
            leader = session.scalar(select(Track.duplicate_of).where(Track.id == leader)) or leader
        # Locked (in PostgreSQL) so that a concurrent writer of the same file replaces it after this
        # one, seeing its windows, and never leaves both sets behind.
        track = session.scalars(select(Track).where(Track.path == record.path).with_for_update()).first()
        replaced = track is not None
        old_window_ids = []
        if track is None:
            track = Track(path=record.path)
            session.add(track)
        else:
            old_window_ids = list(session.scalars(select(Window.id).where(Window.track_id == track.id)))
            session.execute(delete(Window).where(Window.track_id == track.id))
            # The group's other files were each linked as holding its recording, which the file
            # still holds (it matched one of them): they stay, as repair would keep them.
            if leader != track.id:
                _detach(session, track.id)  # new content: its duplicate links start again
        track.size, track.mtime_ns, track.sha256 = record.size, record.mtime_ns, record.sha256
        track.audio_sha256 = record.audio_sha256
        track.duration = record.duration
        for field, value in record.tags.items():
            setattr(track, field, value)
        track.vector = to_blob(record.vector)
        track.duplicate_of = leader if leader != track.id else None
        track.layer_vectors = to_blob(record.layer_vectors)
        track.indexed_at = time.time()
        session.flush()
        layers = record.window_layer_vectors
        windows = [
            Window(
                track_id=track.id,
                position=i,
                start=float(s),
                end=float(e),
                vector=to_blob(v),
                layer_vectors=None if layers is None else to_blob(layers[i]),
            )
            for i, (s, e, v) in enumerate(
                zip(record.window_starts, record.window_ends, record.window_vectors, strict=True)
            )
        ]
        session.add_all(windows)
        if replaced:
            session.execute(delete(TextVector).where(TextVector.track_id == track.id))
        if record.text_vector is not None:
            session.add(TextVector(track_id=track.id, vector=to_blob(record.text_vector)))
        session.flush()
        session.execute(delete(Failure).where(Failure.path == record.path))
        self._bump_version(session, removed=replaced)
        return StoredTrack(track.id, replaced, old_window_ids, [w.id for w in windows])

    def delete_track(self, track_id: int) -> list[int]:
        """Remove a track and its windows; returns the removed window ids."""

        def change(session: Session) -> list[int]:
            session.execute(select(Track.id).where(Track.id == track_id).with_for_update())
            window_ids = list(session.scalars(select(Window.id).where(Window.track_id == track_id)))
            _detach(session, track_id)
            session.execute(delete(Window).where(Window.track_id == track_id))
            session.execute(delete(TextVector).where(TextVector.track_id == track_id))
            session.execute(delete(Track).where(Track.id == track_id))
            self._bump_version(session, removed=True)
            return window_ids

        return self._write(change)

    def duplicate_groups(self, leaders: Sequence[int] | None = None) -> dict[int, list[Track]]:
        """{leader id: [leader, other files of the same recording...]} for groups of two or more."""
        with self.session() as session:
            query = select(Track).where(Track.duplicate_of.is_not(None))
            if leaders is not None:
                query = query.where(Track.duplicate_of.in_([int(i) for i in leaders]))
            members = list(session.scalars(query.order_by(Track.id)))
            heads = self.tracks_by_id(sorted({m.duplicate_of for m in members}))
            groups: dict[int, list[Track]] = {lead: [track] for lead, track in heads.items()}
            for member in members:
                groups[member.duplicate_of].append(member)
            return groups

    def paths_under(self, prefixes: Sequence[str]) -> list[tuple[int, str]]:
        """(id, path) of the tracks whose path starts with one of ``prefixes``."""
        with self.session() as session:
            condition = or_(*(Track.path.startswith(prefix, autoescape=True) for prefix in prefixes))
            return [(row[0], row[1]) for row in session.execute(select(Track.id, Track.path).where(condition))]

    def durations(self, *, copies: bool = False) -> list[tuple[int, str, float]]:
        """(id, path, duration) of every track that leads its recording (no duplicate files; with
        ``copies``, of every track), in id order."""
        with self.session() as session:
            query = select(Track.id, Track.path, Track.duration).order_by(Track.id)
            if not copies:
                query = query.where(Track.duplicate_of.is_(None))
            return [(row[0], row[1], row[2]) for row in session.execute(query)]

    def update_file(self, track_id: int, *, tags: dict | None = None, **fields) -> bool:
        """Record what changed about a file whose audio did not (its size, mtime, hashes, path when
        it moved, ``tags`` when they were read again); the vectors stay. Whether the tags changed."""

        def change(session: Session) -> bool:
            track = session.get(Track, track_id, with_for_update=True)
            if track is None:  # removed meanwhile
                return False
            retagged = tags is not None and any(getattr(track, name) != value for name, value in tags.items())
            for name, value in {**fields, **(tags or {})}.items():
                setattr(track, name, value)
            return retagged

        return self._write(change)

    def tracks_with_audio(self, audio_sha256: str) -> list[tuple[int, str]]:
        """(id, path) of the tracks whose files hold this audio (see Track.audio_sha256), oldest first."""
        with self.session() as session:
            query = select(Track.id, Track.path).where(Track.audio_sha256 == audio_sha256).order_by(Track.id)
            return [(row[0], row[1]) for row in session.execute(query)]

    def track_ids_where(self, condition) -> np.ndarray:
        """Ids of the tracks that meet a SQL condition on tracks, in order (a search filters
        window hits by their track, so their window ids are never needed)."""
        with self.session() as session:
            return np.fromiter(session.scalars(select(Track.id).where(condition).order_by(Track.id)), dtype=np.int64)

    def find_tracks(self, text: str, *, limit: int, offset: int) -> tuple[int, list[Track]]:
        """(total, page) of tracks whose title, artist, album or path contains ``text`` (any case)."""
        needle = fold(text).replace("\n", " ")
        # One column holds the four fields folded, found through its index (see text_index).
        condition = text_index.contains(needle, self._text_indexed, self.dialect) if needle else true()
        with self.session() as session:
            total = session.scalar(select(func.count(Track.id)).where(condition))
            rows = session.scalars(
                select(Track)
                .where(condition)
                # NULLS FIRST as SQLite sorts them, so the pages are the same in every database.
                .order_by(
                    Track.artist.asc().nulls_first(), Track.album.asc().nulls_first(), Track.title.asc().nulls_first()
                )
                .order_by(Track.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return total, list(rows)

    def repair_rows(self) -> tuple[int, int, list[int]]:
        """Fix rows that break the catalog's rules: (windows of no track removed, duplicate leaders
        made to lead again, ids of tracks without windows, left for the caller to remove)."""
        with self.session() as session, session.begin():
            orphans = session.execute(delete(Window).where(Window.track_id.not_in(select(Track.id)))).rowcount
            leaders = select(Track.duplicate_of).where(Track.duplicate_of.is_not(None))
            led_again = session.execute(
                update(Track).where(Track.id.in_(leaders), Track.duplicate_of.is_not(None)).values(duplicate_of=None)
            ).rowcount
            empty = list(session.scalars(select(Track.id).where(Track.id.not_in(select(Window.track_id)))))
            if orphans or led_again:
                self._bump_version(session, removed=bool(orphans))
        return orphans, led_again, empty

    # --- meta -----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self.session() as session:
            row = session.get(Meta, key)
            return row.value if row else None

    def update_meta(
        self, values: dict[str, str], *, bump_version: bool = False, searchable_changed: bool = False
    ) -> None:
        """Set meta keys in one transaction; ``bump_version`` when they change what the index holds,
        ``searchable_changed`` when every searchable vector is now of another kind (a new transform)."""
        with self.session() as session, session.begin():
            for key, value in values.items():
                session.merge(Meta(key=key, value=value))
            if bump_version or searchable_changed:
                self._bump_version(session, searchable_changed=searchable_changed)

    def meta_keys(self, prefix: str) -> dict[str, str]:
        """{key: value} of the meta keys that start with ``prefix``."""
        with self.session() as session:
            rows = session.scalars(select(Meta).where(Meta.key.startswith(prefix, autoescape=True))).all()
            return {row.key: row.value for row in rows}

    def delete_meta(self, keys: Sequence[str]) -> None:
        with self.session() as session, session.begin():
            session.execute(delete(Meta).where(Meta.key.in_(list(keys))))

    # --- failures -------------------------------------------------------------------------

    def failure_by_path(self, path: str) -> Failure | None:
        with self.session() as session:
            return session.scalars(select(Failure).where(Failure.path == path)).first()

    def record_failure(self, path: str, *, size: int, mtime_ns: int, reason: str) -> None:
        def change(session: Session) -> None:
            row = session.scalars(select(Failure).where(Failure.path == path)).first()
            if row is None:
                row = Failure(path=path)
                session.add(row)
            row.size, row.mtime_ns, row.reason, row.failed_at = size, mtime_ns, reason, time.time()

        self._write(change)

    def failures(self) -> list[Failure]:
        with self.session() as session:
            return list(session.scalars(select(Failure).order_by(Failure.path)))

    # --- figures --------------------------------------------------------------------------

    def count(self, name: str) -> int:
        """How many tracks, windows or text vectors there are (cheap: no blob is read)."""
        with self.session() as session:
            return session.scalar(select(func.count(id_column(name))))

    def ids(self, name: str) -> np.ndarray:
        """Every track, window or text vector id, in order (no vector is read; streamed, so no Python
        object per id is held)."""
        column = id_column(name)
        with self.engine.connect() as connection:
            # The driver's rows: at millions of ids, SQLAlchemy's wrapping of each costs more than
            # the query. Unordered, then sorted here: SQLite reads them from a smaller index that
            # holds them (the rowid), where ORDER BY id would walk the table, every vector included.
            cursor = connection.connection.cursor()
            try:
                cursor.execute(f"SELECT {column.name} FROM {column.table.name}")
                parts = [np.empty(0, dtype=np.int64)]
                # In batches, so no Python object per id is held at once.
                while rows := cursor.fetchmany(65_536):
                    parts.append(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
            finally:
                cursor.close()
        return np.sort(np.concatenate(parts))

    def id_range(self, name: str) -> tuple[int, int]:
        """The lowest and highest track or window id ((0, -1) when there is none): two index look-ups."""
        table = Track if name == "tracks" else Window
        with self.session() as session:
            # Apart: SQLite answers a lone min() or max() from the key's ends, both at once by a scan.
            low = session.scalar(select(func.min(table.id)))
            high = session.scalar(select(func.max(table.id)))
        return (0, -1) if high is None else (int(low), int(high))

    def size_bytes(self) -> int:
        """Bytes the tables take in a server database (PostgreSQL; 0 where that cannot be asked)."""
        if self.dialect != "postgresql":
            return 0
        with self.session() as session:
            return sum(
                session.scalar(select(func.pg_total_relation_size(table.name))) or 0
                for table in Base.metadata.sorted_tables
            )

    def counts(self) -> dict[str, float]:
        with self.session() as session:
            tracks, seconds = session.execute(select(func.count(Track.id), func.sum(Track.duration))).one()
            layer_bytes = (session.scalar(select(func.sum(func.length(Track.layer_vectors)))) or 0) + (
                session.scalar(select(func.sum(func.length(Window.layer_vectors)))) or 0
            )
            return {
                "tracks": tracks,
                "windows": session.scalar(select(func.count(Window.id))),
                "failed": session.scalar(select(func.count(Failure.id))),
                "audio_hours": (seconds or 0.0) / 3600,
                "layer_vector_bytes": layer_bytes,
            }
