"""An MPD radio: keeps MPD's queue a few songs ahead of the current one with catalog tracks like
the last ones queued, by the radio rules (see mertsearch.catalog.radio), for as long as it runs.

MPD names songs by their path relative to its music directory; the catalog by absolute paths.
The two meet through ``music_dir``: MPD's ``file`` joined to it is a catalog path, and a catalog
path under it, made relative again, is what MPD is told to add.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy.exc import SQLAlchemyError

from mertsearch.errors import InvalidArgumentError, MertSearchError, PlayerError, TrackNotFoundError
from mertsearch.search.options import SearchOptions

DEFAULT_PORT = 6600
# Seconds between tries while MPD cannot be reached (a restart, a reboot): quick at first, then
# every 30 s at most, for as long as it takes.
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# Each song added is the best of this many radio answers that MPD can play (a track outside the
# music directory, or one MPD's database lacks, gives way to the next).
CANDIDATES = 10
# Seconds MPD has to answer a command (idle waits for as long as it takes).
COMMAND_TIMEOUT_S = 30
# The songs each radio call is given (the last played and queued): its seeds, and the songs it must
# not repeat. A call's cost grows with its history, so a radio that runs for months keeps only
# these; songs played before them may come again.
HISTORY = 500
# What the catalog raises when it cannot answer for now (its database or vector store out of
# reach, a rebuild under way): the radio waits and asks again, as for a lost MPD.
CATALOG_ERRORS = (MertSearchError, SQLAlchemyError)


@dataclass(frozen=True)
class MpdAddress:
    """Where MPD listens: a host and port, or the path of its local socket (port None)."""

    host: str
    port: int | None = DEFAULT_PORT
    password: str | None = None

    @property
    def local(self) -> bool:
        return self.port is None

    def __str__(self) -> str:
        if self.port is None:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> MpdAddress:
    """'HOST:PORT', 'HOST' (port 6600), '[IPv6]:PORT', or the path of MPD's local socket ('/run/mpd/socket',
    '~/.mpd/socket', '@abstract'); 'PASSWORD@' before any of them, as MPD_HOST writes it."""
    password = None
    if "@" in text[1:] and not text.startswith("@"):
        password, _, text = text.partition("@")
    if not text:
        raise InvalidArgumentError("an MPD address is HOST:PORT, HOST or the path of MPD's socket, got nothing")
    if text.startswith(("/", "~", "@")):
        return MpdAddress(os.path.expanduser(text), None, password)
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgumentError(f"an MPD address is HOST:PORT (a port from 1 to 65535), got {text!r}")
    return MpdAddress(host, int(port), password)


def catalog_path(music_dir: Path, file: str) -> str:
    """The absolute path of MPD's ``file`` (relative to its music directory), as the catalog holds it."""
    return os.fsdecode(music_dir / file)


def mpd_file(music_dir: Path, path: str) -> str | None:
    """The name MPD knows the catalog file ``path`` by: relative to ``music_dir``, with forward
    slashes; None for a file outside it, which MPD cannot play from its database."""
    try:
        relative = Path(path).relative_to(music_dir)
    except ValueError:
        return None
    if relative == Path(".") or ".." in relative.parts:
        return None
    return str(PurePosixPath(*relative.parts))


class MpdRadio:
    """Keeps MPD's queue at least ``ahead`` songs past the current one. Each song added is the
    catalog's radio answer for the history (the songs that were current while this ran, then
    the queue, in order), so it is like the last 3 songs queued, is none of the history and, by
    default, shares no artist with the last 3 songs and no album with the last 5. Songs are
    added one at a time, each counting as history for the next, so the rules hold between the
    songs added too. Once every track MPD can play was played or queued, the half played
    longest ago may come again. ``options`` adds filters and changes the rules (see
    Catalog.radio). ``report`` is told, in a line, of every song added, every connection lost or
    made, and every catalog error."""

    def __init__(
        self,
        catalog,
        address: MpdAddress,
        *,
        music_dir: str | os.PathLike | None = None,
        ahead: int = 5,
        options: SearchOptions | None = None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        if isinstance(ahead, bool) or not isinstance(ahead, int) or not 1 <= ahead <= 1000:
            raise InvalidArgumentError(f"ahead must be from 1 to 1000 songs, got {ahead!r}")
        if music_dir is None and not address.local:
            raise InvalidArgumentError(
                "MPD tells its music directory only over its local socket: give --music-dir, the folder "
                f"that MPD's music_directory is on this machine, or connect to MPD's socket instead of {address}"
            )
        self.catalog = catalog
        self.address = address
        self.music_dir = None if music_dir is None else _music_dir(music_dir)
        self.ahead = ahead
        self.options = options or SearchOptions()
        self.report = report
        self.played: deque[int] = deque(maxlen=HISTORY)  # catalog tracks that were current, oldest first
        self.client = None
        self._current_song: str | None = None  # MPD's id of the current song when last looked
        self._unplayable: set[int] = set()  # catalog tracks MPD could not add
        self._told_no_seed = False
        self._told_empty = False

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Keep the queue filled until interrupted (KeyboardInterrupt goes through). A lost
        connection, or a catalog that cannot answer, is tried again after 0.5, 1, 2, ... up to
        30 s, the history kept."""
        mpd = _mpd()
        failures = 0
        while True:
            try:
                self.connect()
                failures = stalled = 0
                while True:
                    try:
                        self.top_up()
                    except CATALOG_ERRORS as exc:
                        # MPD plays on from its queue meanwhile; connection errors of MPD's own
                        # are none of these, and go on to the handler below.
                        wait = BACKOFF_S[min(stalled, len(BACKOFF_S) - 1)]
                        stalled += 1
                        self.report(f"the catalog cannot answer: {_reason(exc)}; trying again in {wait:g} s")
                        time.sleep(wait)
                        continue
                    stalled = 0
                    self.client.idle("player", "playlist")
            except mpd.CommandError as exc:
                self.close()
                raise PlayerError(f"MPD at {self.address} refused: {exc}") from None
            except (OSError, mpd.ConnectionError) as exc:
                self.close()
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                self.report(f"MPD at {self.address}: {_reason(exc)}; trying again in {wait:g} s")
                time.sleep(wait)

    def connect(self) -> None:
        mpd = _mpd()
        client = mpd.MPDClient()
        client.timeout, client.idletimeout = COMMAND_TIMEOUT_S, None
        client.connect(self.address.host, self.address.port)
        self.client = client
        try:
            if self.address.password is not None:
                client.password(self.address.password)
            if self.music_dir is None:
                self.music_dir = _music_dir(client.config())
        except mpd.CommandError as exc:
            self.close()
            raise PlayerError(f"MPD at {self.address} refused: {exc}") from None
        self._current_song = None
        self.report(f"connected to MPD {client.mpd_version} at {self.address}, music in {self.music_dir}")

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:  # a socket already gone: nothing is left to close
                pass
            self.client = None

    # --- one look at the queue --------------------------------------------------------------

    def top_up(self) -> list[str]:
        """Note the current song as played and add songs until ``ahead`` follow it; returns the
        files added. Nothing is added while no song is current (MPD stopped with nothing chosen)."""
        status = self.client.status()
        queue = self.client.playlistinfo()
        current = status.get("songid")
        if current is not None and current != self._current_song:
            self._current_song = current
            playing = next((song for song in queue if song.get("id") == current), None)
            track = None if playing is None else self._track_of(playing["file"])
            if track is not None:
                self.played.append(track)
        if status.get("song") is None:
            return []
        missing = self.ahead - (len(queue) - int(status["song"]) - 1)
        if missing <= 0:
            return []
        queued = [track for song in queue if (track := self._track_of(song["file"])) is not None]
        in_queue = set(queued)
        played = [track for track in self.played if track not in in_queue]
        if not played and not queued:
            if not self._told_no_seed:
                self.report("no song of the queue is in the catalog: nothing to start the radio from")
                self._told_no_seed = True
            return []
        self._told_no_seed = False
        added, chosen = [], []  # the files added, and their tracks
        while len(added) < missing:
            history = (played + queued + chosen)[-HISTORY:]
            try:
                found = self._next(history)
            except TrackNotFoundError:
                # A played track left the catalog while this ran (removed, or its file gone at a
                # re-index): forget it, and carry on with the rest.
                self.played = deque((track for track in self.played if self._exists(track)), maxlen=HISTORY)
                self._unplayable = {track for track in self._unplayable if self._exists(track)}
                played = [track for track in played if self._exists(track)]
                queued = [track for track in queued if self._exists(track)]
                history = (played + queued + chosen)[-HISTORY:]
                found = self._next(history) if history else None
            if found is None:
                again = self._replay(played)
                if again:  # a library played through starts round again
                    played = [track for track in played if track not in again]
                    self.report(f"every song was played or queued: the {len(again)} played longest ago may come again")
                    continue
                if not self._told_empty:
                    self.report("nothing left to add: every catalog track MPD can play is queued")
                    self._told_empty = True
                break
            self._told_empty = False
            result, file = found
            chosen.append(result.track_id)
            added.append(file)
            self.report(f"added {_describe(result, file)}")
        return added

    def _replay(self, played: list[int]) -> set[int]:
        """The half of the ``played`` tracks (oldest first, none queued) whose last play is the
        oldest, forgotten so that they may come again (the other half stays out, so what was
        just played does not come round at once); empty when nothing was played."""
        last = {track: position for position, track in enumerate(played)}
        again = set(sorted(last, key=last.__getitem__)[: max(1, len(last) // 2)]) if last else set()
        self.played = deque((track for track in self.played if track not in again), maxlen=HISTORY)
        return again

    def _next(self, history: list[int]):
        """The best radio answer after ``history`` that MPD accepted, as (result, file); None when
        no track is left."""
        while True:
            options = self.options.changed(k=CANDIDATES, exclude=(*self.options.exclude, *self._unplayable))
            results = self.catalog.radio(history, options)
            for result in results:
                for path in (result.path, *result.alternates):
                    file = mpd_file(self.music_dir, path)
                    if file is not None and self._add(file):
                        return result, file
                self._unplayable.add(result.track_id)
            if len(results) < CANDIDATES:
                return None

    def _add(self, file: str) -> bool:
        try:
            self.client.add(file)
        except _mpd().CommandError as exc:
            # Not in MPD's database (not updated since the file came, or a format it cannot read).
            self.report(f"MPD cannot add {file}: {exc}")
            return False
        return True

    def _exists(self, track: int) -> bool:
        try:
            self.catalog.track_id(track)
        except TrackNotFoundError:
            return False
        return True

    def _track_of(self, file: str) -> int | None:
        """The catalog track of MPD's ``file``; None for songs the catalog does not hold (streams too)."""
        if "://" in file:
            return None
        try:
            return self.catalog.track_id(catalog_path(self.music_dir, file))
        except TrackNotFoundError:
            return None


def _music_dir(directory: str | os.PathLike) -> Path:
    path = Path(directory).expanduser().absolute()
    if not path.is_dir():
        raise InvalidArgumentError(f"MPD's music directory {os.fspath(directory)!r} is not a folder on this machine")
    return path


def _describe(result, file: str) -> str:
    who = " - ".join(part for part in (result.artist, result.title) if part)
    score = f"similarity {result.similarity:.2f}" if result.similarity is not None else f"score {result.score:.3f}"
    return f"{file} ({who}; {score})" if who else f"{file} ({score})"


def _reason(exc: BaseException) -> str:
    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy's: the driver's own error
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return reason.splitlines()[0]


def _mpd():
    """python-mpd2, which the ``players`` extra installs."""
    try:
        import mpd
    except ImportError:
        raise PlayerError(
            "the MPD radio needs python-mpd2: pip install 'mertsearch[players]' (or python-mpd2)"
        ) from None
    return mpd
