"""SQLAlchemy tables of a catalog: tracks, their windows, files that failed, and a key-value meta."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mertsearch.files import is_utf8


class PathText(TypeDecorator):
    """A file path as text. A name that is not valid UTF-8 (Python holds its bytes as surrogate
    escapes, see os.fsdecode) cannot be text in SQLite: it is stored as its raw bytes instead."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or is_utf8(value):
            return value
        return value.encode("utf-8", "surrogateescape")

    def process_result_value(self, value, dialect):
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class Base(DeclarativeBase):
    pass


class Track(Base):
    __tablename__ = "tracks"

    # The primary key is also the track's id in the FAISS index and in every API.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    duration: Mapped[float] = mapped_column(Float)
    title: Mapped[str | None] = mapped_column(Text)
    artist: Mapped[str | None] = mapped_column(Text, index=True)
    album: Mapped[str | None] = mapped_column(Text, index=True)
    genre: Mapped[str | None] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(Integer)
    musicbrainz_track_id: Mapped[str | None] = mapped_column(String(36))
    musicbrainz_album_id: Mapped[str | None] = mapped_column(String(36))
    musicbrainz_artist_id: Mapped[str | None] = mapped_column(String(36))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # The first-indexed file of the same recording (another encoding or a copy), if this is one.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("tracks.id", ondelete="SET NULL"), index=True)
    # Every layer's track vector (layers x dim), in catalogs that keep all layers.
    layer_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    indexed_at: Mapped[float] = mapped_column(Float)

    windows: Mapped[list[Window]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True
    )


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = (Index("ix_windows_track", "track_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    layer_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    track: Mapped[Track] = relationship(back_populates="windows")


class Failure(Base):
    """A file that could not be indexed, and why; retried only when the file changes."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[float] = mapped_column(Float)


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
