"""Bring the tables of a catalog made by an earlier version up to date, when it is opened.

New columns are added (SQLite and PostgreSQL both add a nullable column without rewriting the
table), new indexes made, and the folded copies of the tags are computed again whenever the
folding changed (mertsearch.text.FOLD_VERSION): once, for every row, in batches. The audio
identity of files indexed before it existed is learnt by the next ``index`` (see
mertsearch.indexer.pipeline), not here: it needs the files.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, inspect, select, text, update

from mertsearch.storage.schema import FOLDED_TAGS, Base, Meta, Track, search_text
from mertsearch.text import FOLD_VERSION, fold

# Meta key: the FOLD_VERSION the folded copies were computed with.
FOLD_KEY = "text_fold"
BATCH = 5000


def upgrade(connection: Connection) -> None:
    """Add what the tables lack and refold the tags if needed (in the caller's transaction)."""
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        for column in missing:
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
        # Those of new columns, and new ones of old columns: one look at the table's, at every opening.
        indexed = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(connection)
    version = connection.scalar(select(Meta.value).where(Meta.key == FOLD_KEY))
    if version != FOLD_VERSION:
        refold(connection)
        values = {"key": FOLD_KEY, "value": FOLD_VERSION}
        if version is None:
            connection.execute(Meta.__table__.insert().values(values))
        else:
            connection.execute(update(Meta.__table__).where(Meta.key == FOLD_KEY).values(value=FOLD_VERSION))


def refold(connection: Connection) -> int:
    """Compute every track's folded copies again; how many tracks there were."""
    table = Track.__table__
    names = ["id", "title", "path", *FOLDED_TAGS]
    values = {f"{name}_key": bindparam(f"new_{name}") for name in FOLDED_TAGS}
    values["search_text"] = bindparam("new_text")
    change = update(table).where(table.c.id == bindparam("row_id")).values(values)
    done, last = 0, None
    while True:
        query = select(*(table.c[name] for name in names)).order_by(table.c.id).limit(BATCH)
        rows = connection.execute(query if last is None else query.where(table.c.id > last)).all()
        if not rows:
            return done
        connection.execute(
            change,
            [
                {
                    "row_id": row.id,
                    **{f"new_{name}": fold(getattr(row, name)) or None for name in FOLDED_TAGS},
                    "new_text": search_text(row.title, row.artist, row.album, row.path),
                }
                for row in rows
            ],
        )
        done, last = done + len(rows), rows[-1].id
