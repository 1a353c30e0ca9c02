"""An index over the tracks' folded text, so that a look-up by words (find_tracks) does not read
every track.

The text searched is a substring of ``Track.search_text`` anywhere, which no ordinary index can
find: SQLite keeps a trigram FTS5 table of it (an external-content table, kept in step by
triggers, so every writer, this version's or an older one's, updates it), and PostgreSQL a
trigram GIN index (the pg_trgm extension), which its planner uses for ``LIKE '%...%'`` itself.
A look-up shorter than a trigram, or a database without either, scans the text (in SQLite an
index of the column alone, not the rows).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, literal_column, select, text
from sqlalchemy.exc import DBAPIError

from mertsearch.storage.schema import Track

log = logging.getLogger(__name__)

TABLE = "track_text"
# The folded text is matched as it is stored (already case-folded): no folding of the tokenizer's.
_SQLITE = [
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(search_text, content='tracks', content_rowid='id',"
    " tokenize='trigram case_sensitive 1')",
    f"CREATE TRIGGER {TABLE}_insert AFTER INSERT ON tracks BEGIN"
    f" INSERT INTO {TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
    f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON tracks BEGIN"
    f" INSERT INTO {TABLE}({TABLE}, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF search_text ON tracks BEGIN"
    f" INSERT INTO {TABLE}({TABLE}, rowid, search_text) VALUES ('delete', old.id, old.search_text);"
    f" INSERT INTO {TABLE}(rowid, search_text) VALUES (new.id, new.search_text); END",
    # What the table already holds (a catalog made before this index) is indexed once.
    f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')",
    # A look-up too short for a trigram reads this index of the text, not the rows (which hold the
    # vectors: a page or more each). Not in PostgreSQL, whose B-trees refuse long entries.
    "CREATE INDEX IF NOT EXISTS ix_tracks_search_text ON tracks (search_text)",
]
_POSTGRES_INDEX = "ix_tracks_search_text_trgm"
SHORTEST = 3  # characters: a trigram


def ensure(connection: Connection) -> bool:
    """Make the index if the database lacks it (in the caller's transaction); whether there is one."""
    if connection.dialect.name == "sqlite":
        if connection.scalar(text("SELECT 1 FROM sqlite_master WHERE name = :name"), {"name": TABLE}):
            return True
        try:
            with connection.begin_nested():
                for statement in _SQLITE:
                    connection.execute(text(statement))
        except DBAPIError as exc:  # an SQLite built without FTS5 or its trigram tokenizer
            log.warning("no text index (%s): looking tracks up by words reads every track", exc.orig)
            return False
        return True
    if connection.dialect.name == "postgresql":
        found = "SELECT 1 FROM pg_indexes WHERE indexname = :name"
        if connection.scalar(text(found), {"name": _POSTGRES_INDEX}):
            return True
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
                connection.execute(
                    text(f"CREATE INDEX {_POSTGRES_INDEX} ON tracks USING gin (search_text gin_trgm_ops)")
                )
        except DBAPIError as exc:  # pg_trgm not installed, or not ours to create
            reason = str(exc.orig).strip().splitlines()[0]
            log.warning("no text index (%s): looking tracks up by words reads every track", reason)
            return False
        return True
    return False


def contains(needle: str, indexed: bool, dialect: str):
    """The condition on tracks that their text contains ``needle`` (folded, not empty)."""
    if indexed and dialect == "sqlite" and len(needle) >= SHORTEST:
        phrase = '"' + needle.replace('"', '""') + '"'  # a phrase of trigrams: the substring itself
        matched = select(literal_column("rowid")).select_from(text(TABLE))
        return Track.id.in_(matched.where(text(f"{TABLE} MATCH :phrase").bindparams(phrase=phrase)))
    # autoescape: "%" and "_" are themselves, not wildcards (PostgreSQL's trigram index serves this).
    return Track.search_text.contains(needle, autoescape=True)
