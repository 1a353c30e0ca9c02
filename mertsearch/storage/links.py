"""Part of the metadata store: the duplicate links of every track, read and rewritten at once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from mertsearch.storage.schema import Track

# Key of the PostgreSQL advisory lock under which links are decided from the others and written:
# without it two writers (ingests sharing a catalog) could each link a file to a track that the
# other is linking elsewhere, a chain. SQLite has one writer at a time.
LINKS_LOCK = 0x6D657275

Links = list[tuple[int, float, int | None]]


def lock_links(session: Session) -> None:
    """Hold the links' lock until ``session``'s transaction ends (see LINKS_LOCK)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LINKS_LOCK})


def _links(session: Session) -> Links:
    query = select(Track.id, Track.duration, Track.duplicate_of).order_by(Track.id)
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


class DuplicateLinks:
    """Part of :class:`mertsearch.storage.store.MetadataStore`: its methods over duplicate links."""

    def track_links(self) -> Links:
        """(id, duration, leader or None) of every track, in id order (no vector is read)."""
        with self.session() as session:
            return _links(session)

    def relink_tracks(
        self, decide: Callable[[Links], dict[int, int | None]]
    ) -> tuple[dict[int, int | None], dict[int, int | None]]:
        """Give tracks the leaders (None: the track leads its recording) that ``decide`` makes of
        every track's links as they are now, in one transaction under the links' lock, so that
        no other writer changes a link between the reading and the writing; returns (each
        track's leader before, the leaders given)."""

        def change(session: Session) -> tuple[dict[int, int | None], dict[int, int | None]]:
            lock_links(session)
            links = _links(session)
            leaders = decide(links)
            for track_id, leader in leaders.items():
                session.execute(update(Track).where(Track.id == track_id).values(duplicate_of=leader))
            return {i: leader for i, _, leader in links}, leaders

        return self._write(change)
