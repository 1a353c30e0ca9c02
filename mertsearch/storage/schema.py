"""SQLAlchemy tables of a catalog: tracks, their windows and text vectors, files that failed, and a key-value meta."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mertsearch.files import is_utf8
from mertsearch.text import fold

# Tags compared by their folded copy (mertsearch.text.fold), kept beside them in "<tag>_key".
FOLDED_TAGS = ("artist", "album", "genre")

# Surrogate escapes (one per byte 0x80-0xff that is not valid UTF-8) and the private-use code points
# that stand for them in databases whose text must be valid Unicode: U+DC80 + b <-> U+10FE00 + b.
_SURROGATES = {chr(0xDC00 + b): chr(0x10FE00 + b) for b in range(0x80, 0x100)}
_FROM_SURROGATES = str.maketrans(_SURROGATES)
_TO_SURROGATES = str.maketrans({v: k for k, v in _SURROGATES.items()})

# Ids: 64-bit everywhere; in SQLite the INTEGER PRIMARY KEY that is the rowid (as catalogs always had).
Id = BigInteger().with_variant(Integer, "sqlite")


class PathText(TypeDecorator):
    """A file path as text. A name that is not valid UTF-8 (Python holds its bytes as surrogate
    escapes, see os.fsdecode) cannot be text as it is. SQLite stores such a name as its raw bytes;
    other databases (PostgreSQL) get each escaped byte as a private-use code point (U+10FE80 to
    U+10FEFF), so the path stays text that starts with its folder's path, for prefix queries.
    (A valid name that holds those private-use code points itself would read back escaped.)"""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or is_utf8(value):
            return value
        if dialect.name == "sqlite":
            return value.encode("utf-8", "surrogateescape")
        return value.translate(_FROM_SURROGATES)

    def process_result_value(self, value, dialect):
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if value is not None and dialect.name != "sqlite":
            return value.translate(_TO_SURROGATES)
        return value


class TagText(TypeDecorator):
    """Text read from files (tags, error messages). PostgreSQL's text cannot hold NUL characters,
    which tags sometimes do, nor unpaired surrogates: those are dropped or replaced there."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name == "sqlite":
            return value
        value = value.replace("\x00", "")
        return value if is_utf8(value) else value.encode("utf-8", "replace").decode("utf-8")


class Base(DeclarativeBase):
    pass


class Track(Base):
    __tablename__ = "tracks"
    # The order a listing of the catalog pages through (find_tracks), walked instead of sorted.
    __table_args__ = (Index("ix_tracks_listing", "artist", "album", "title", "id"),)

    # The primary key is also the track's id in the FAISS index and in every API.
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    # The whole file's SHA-256, and its audio's: the hash of the audio stream's packets as FFmpeg
    # demuxes them (mertsearch.audio.identity), which tags and cover art do not change.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    audio_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    duration: Mapped[float] = mapped_column(Float)
    title: Mapped[str | None] = mapped_column(TagText)
    artist: Mapped[str | None] = mapped_column(TagText, index=True)
    album: Mapped[str | None] = mapped_column(TagText, index=True)
    genre: Mapped[str | None] = mapped_column(TagText)
    year: Mapped[int | None] = mapped_column(Integer)
    # Text, not String(36): PostgreSQL enforces a length, and a malformed tag must not fail the file.
    musicbrainz_track_id: Mapped[str | None] = mapped_column(TagText)
    musicbrainz_album_id: Mapped[str | None] = mapped_column(TagText)
    musicbrainz_artist_id: Mapped[str | None] = mapped_column(TagText)
    # Folded copies (written with the row, see _fold_keys): what filters and caps compare.
    artist_key: Mapped[str | None] = mapped_column(TagText, index=True)
    album_key: Mapped[str | None] = mapped_column(TagText, index=True)
    genre_key: Mapped[str | None] = mapped_column(TagText, index=True)
    # Title, artist, album and path folded, one per line: what a text look-up searches (see
    # storage.text_index).
    search_text: Mapped[str | None] = mapped_column(TagText)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # The first-indexed file of the same recording (another encoding or a copy), if this is one.
    duplicate_of: Mapped[int | None] = mapped_column(Id, ForeignKey("tracks.id", ondelete="SET NULL"), index=True)
    # Every layer's track vector (layers x dim), in catalogs that keep all layers.
    layer_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    indexed_at: Mapped[float] = mapped_column(Float)

    windows: Mapped[list[Window]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True
    )


def search_text(title: str | None, artist: str | None, album: str | None, path: str) -> str:
    return "\n".join(fold(part) for part in (title, artist, album, path))


@event.listens_for(Track, "before_insert")
@event.listens_for(Track, "before_update")
def _fold_keys(_mapper, _connection, track: Track) -> None:
    """Every row written through the ORM carries the folded copies of what it holds now."""
    for name in FOLDED_TAGS:
        setattr(track, f"{name}_key", fold(getattr(track, name)) or None)
    track.search_text = search_text(track.title, track.artist, track.album, track.path)


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = (Index("ix_windows_track", "track_id", "position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    track_id: Mapped[int] = mapped_column(Id, ForeignKey("tracks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    layer_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    track: Mapped[Track] = relationship(back_populates="windows")


class TextVector(Base):
    """A track's vector in the space CLaMP 3 shares between text and music (catalogs made with
    text search): what a described sound is searched against."""

    __tablename__ = "text_vectors"

    track_id: Mapped[int] = mapped_column(Id, ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Failure(Base):
    """A file that could not be indexed, and why; retried only when the file changes."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(TagText)
    failed_at: Mapped[float] = mapped_column(Float)


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
