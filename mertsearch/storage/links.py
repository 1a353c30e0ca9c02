"""Part of the metadata store: the duplicate links of every track, read and rewritten at once."""

from __future__ import annotations

from sqlalchemy import select, update

from mertsearch.storage.schema import Track


class DuplicateLinks:
    """Part of :class:`mertsearch.storage.store.MetadataStore`: its methods over duplicate links."""

    def track_links(self) -> list[tuple[int, float, int | None]]:
        """(id, duration, leader or None) of every track, in id order (no vector is read)."""
        with self.session() as session:
            query = select(Track.id, Track.duration, Track.duplicate_of).order_by(Track.id)
            return [(row[0], row[1], row[2]) for row in session.execute(query)]

    def set_duplicate_links(self, leaders: dict[int, int | None]) -> None:
        """Give these tracks these leaders (None: the track leads its recording), in one transaction."""
        if not leaders:
            return
        with self.session() as session, session.begin():
            for track_id, leader in leaders.items():
                session.execute(update(Track).where(Track.id == track_id).values(duplicate_of=leader))
