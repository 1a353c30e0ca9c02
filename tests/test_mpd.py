"""The MPD radio against a real MPD: started by the tests on loopback, its music the tagged catalog's
twelve tunes (four artists: Ann 4, Bob 3, Cat 3, Dan 2, one folder each), playing into a null output.

What the queue must look like follows from the rules alone, whatever the model finds similar: with
four artists and no artist of the last 3 songs, the songs must go round the artists in turn for
the first 8; no song comes twice in a session, even one taken out of the queue, until every song
was played or queued (then those played longest ago come round again), and an MPD restart loses
nothing."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mertsearch import Catalog
from mertsearch.cli import app
from mertsearch.errors import InvalidArgumentError
from mertsearch.players.mpd import MpdAddress, MpdRadio, mpd_file, parse_address

needs_mpd = pytest.mark.skipif(
    shutil.which("mpd") is None and not os.environ.get("CI"),
    reason="Debian's mpd is not installed (make install brings it; CI runs these tests)",
)


def test_addresses_are_read_as_mpd_clients_write_them():
    assert parse_address("localhost") == MpdAddress("localhost", 6600)
    assert parse_address("music.lan:6601") == MpdAddress("music.lan", 6601)
    assert parse_address("secret@127.0.0.1:7000") == MpdAddress("127.0.0.1", 7000, "secret")
    assert parse_address("[::1]:6602") == MpdAddress("::1", 6602)
    assert parse_address("/run/mpd/socket") == MpdAddress("/run/mpd/socket", None)
    assert parse_address("@mpd") == MpdAddress("@mpd", None)
    assert parse_address("~/.mpd/socket").host == str(Path.home() / ".mpd/socket")
    for wrong in ("", "host:port", "host:0", "host:70000", ":6600"):
        with pytest.raises(InvalidArgumentError):
            parse_address(wrong)


def test_catalog_paths_become_mpd_songs_only_under_the_music_folder():
    music = Path("/srv/music")
    assert mpd_file(music, "/srv/music/Ann/01 Song.flac") == "Ann/01 Song.flac"
    assert mpd_file(music, "/srv/musicals/a.flac") is None
    assert mpd_file(music, "/home/me/a.flac") is None
    assert mpd_file(music, "/srv/music") is None


def test_a_remote_mpd_needs_the_music_folder(tiny_model, tmp_path):
    Catalog.create(tmp_path / "cat", model=str(tiny_model)).close()
    runner = CliRunner()
    remote = runner.invoke(app, ["mpd-radio", "--catalog", str(tmp_path / "cat"), "--mpd", "127.0.0.1:6600"])
    assert remote.exit_code == 1
    assert "--music-dir" in remote.output
    wrong = runner.invoke(app, ["mpd-radio", "--catalog", str(tmp_path / "cat"), "--mpd", "127.0.0.1:port"])
    assert wrong.exit_code == 1
    assert "HOST:PORT" in wrong.output


def _as_from_a_shell() -> None:
    """Ctrl-C as a shell leaves it to a command: a child inherits an ignored SIGINT (Python then
    installs no KeyboardInterrupt for it), and the test process may have one ignored by then."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class Radio:
    """`mertsearch mpd-radio` as a child process, its lines collected as they come."""

    def __init__(self, *args: str) -> None:
        from tests.mpd_server import environment

        self.process = subprocess.Popen(
            [sys.executable, "-m", "mertsearch.cli", "mpd-radio", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(),
            preexec_fn=_as_from_a_shell,
        )
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))

    def wait_for(self, text: str, *, after: int = 0, timeout: float = 60) -> str:
        """The first line from line number ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.lines[after:] if text in line), None)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.process.poll() is None, f"no line with {text!r}:\n" + "\n".join(self.lines)
            try:
                self.lines.append(self._new.get(timeout=min(remaining, 0.5)))
            except queue.Empty:
                pass

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the radio did not stop:\n" + "\n".join(self.lines)) from None
        time.sleep(0.2)
        while not self._new.empty():
            self.lines.append(self._new.get())
        return code


def _files(client) -> list[str]:
    return [song["file"] for song in client.playlistinfo()]


def _wait_for_queue(client, length: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(files := _files(client)) < length:
        assert time.monotonic() < deadline, f"the queue stayed at {files}"
        time.sleep(0.1)
    time.sleep(0.5)  # anything more would come now
    return _files(client)


def _play(client, position: int) -> None:
    client.play(position)
    client.pause(1)  # held still, so the current song moves only when the test says


@pytest.mark.slow
@needs_mpd
def test_the_radio_keeps_mpd_ahead_by_the_rules_through_a_restart(tagged_catalog, tmp_path):
    from tests.mpd_server import MpdServer

    cat, music = tagged_catalog
    server = MpdServer(tmp_path / "mpd", music)
    server.start()
    radio = None
    try:
        server.update()
        client = server.client()
        client.add("Ann/00.flac")
        _play(client, 0)
        radio = Radio(
            "--mpd",
            f"127.0.0.1:{server.port}",
            "--catalog",
            str(cat.directory),
            "--music-dir",
            str(music),
            "--ahead",
            "3",
        )
        radio.wait_for("connected to MPD")
        assert _wait_for_queue(client, 4)[0] == "Ann/00.flac"
        _play(client, 1)
        assert len(_wait_for_queue(client, 5)) == 5

        # MPD goes away and comes back (its state file keeps the queue): the radio finds it again.
        client.disconnect()
        server.stop()
        lost = radio.wait_for("trying again")
        server.start()
        radio.wait_for("connected to MPD", after=radio.lines.index(lost))
        client = server.client()
        # The song played first leaves the queue: only the radio's memory keeps it out now.
        session = _files(client)
        client.delete(0)
        for position in range(1, 8):  # 7 times the next song, until every track was played or queued
            _play(client, position)
            _wait_for_queue(client, position + 4)
        _play(client, 8)  # one more needed, and none left: the song played longest ago comes again
        radio.wait_for("every song was played or queued: the 1 played longest ago may come again")
        session = ["Ann/00.flac", *_wait_for_queue(client, 12)]
    finally:
        code = radio.stop(signal.SIGINT) if radio is not None else None
        server.stop()

    assert code == 0, "\n".join(radio.lines)
    assert radio.lines[-1] == "stopped"
    assert sorted(session[:-1]) == sorted(str(p.relative_to(music)) for p in music.rglob("*.flac"))  # each once
    assert session[-1] == "Ann/00.flac"  # then the first again
    artists = [file.split("/")[0] for file in session]
    for n in range(1, 8):  # four artists, none of the 3 before: round and round while each has songs left
        assert artists[n] not in artists[max(0, n - 3) : n], artists
    added = [line.split()[1] for line in radio.lines if line.startswith("added ")]
    assert added == session[1:], radio.lines


@pytest.mark.slow
@needs_mpd
def test_over_mpds_socket_the_music_folder_is_asked_and_sigterm_stops_it(tagged_catalog, tmp_path):
    from tests.mpd_server import MpdServer

    cat, music = tagged_catalog
    server = MpdServer(tmp_path / "mpd", music)
    server.start()
    try:
        server.update()
        client = server.client()
        client.add("Bob/04.flac")
        _play(client, 0)
        radio = Radio("--mpd", str(server.socket), "--catalog", str(cat.directory), "--ahead", "2")
        assert radio.wait_for("connected to MPD").endswith(f"music in {music}")
        files = _wait_for_queue(client, 3)
        code = radio.stop(signal.SIGTERM)
    finally:
        server.stop()
    assert code == 0, "\n".join(radio.lines)
    artists = [file.split("/")[0] for file in files]
    assert artists[0] == "Bob" and len(set(artists)) == 3  # none of the 3 before: two other artists


@pytest.mark.slow
@needs_mpd
def test_a_removed_track_is_forgotten_and_tracks_outside_the_music_folder_passed_over(tiny_model, tmp_path):
    """In this process, one look at a time: the radio's catalog is a reader, a writer removes a
    track it played (and that left MPD's queue) between two looks. The catalog also holds a copy
    of the first song's sound outside MPD's music folder, which must be passed over."""
    import numpy as np

    from mertsearch.players.mpd import MpdRadio
    from tests.helpers import synthetic_track, tone_track, write_audio
    from tests.mpd_server import MpdServer

    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as writer:
        for n in range(8):
            path = write_audio(music / f"t{n}.wav", tone_track(n, 2.0, 8000, channels=1), 8000)
            windows = rng.normal(size=(2, writer.manifest.encoder.dim)).astype(np.float32)
            windows /= np.linalg.norm(windows, axis=1, keepdims=True)
            writer.store.put_track(synthetic_track(n, windows, path=str(path), tags={"artist": f"A{n}"}))
            if n == 0:  # the same sound outside MPD's music folder: the nearest track, and never queued
                outside = str(tmp_path / "elsewhere" / "t0.wav")
                writer.store.put_track(synthetic_track(8, windows, path=outside, tags={"artist": "B"}))
        writer.rebuild_index()
    server = MpdServer(tmp_path / "mpd", music)
    server.start()
    try:
        server.update()
        client = server.client()
        client.add("t0.wav")
        _play(client, 0)
        with Catalog.open(tmp_path / "cat", mmap=True) as cat:
            lines = []
            address = parse_address(f"127.0.0.1:{server.port}")
            radio = MpdRadio(cat, address, music_dir=music, ahead=2, report=lines.append)
            radio.connect()
            assert len(radio.top_up()) == 2
            _play(client, 1)
            client.delete(0)
            with Catalog.open(tmp_path / "cat") as writer:
                writer.remove([str(music / "t0.wav")])
            added = radio.top_up()
            radio.close()
        queue = _files(client)
    finally:
        server.stop()
    assert len(added) == 1 and len(queue) == 3 == len(set(queue))
    assert all(file.startswith("t") for file in queue)
    assert not any("cannot add" in line for line in lines)  # skipped, not tried on MPD


def _synthetic_library(tmp_path, tiny_model, count: int) -> tuple[Path, Path]:
    """(catalog, music folder) of ``count`` short tones t0.wav... by artists A0..., each track's
    vectors random: what the radio picks is left to chance, the rules alone are tested."""
    import numpy as np

    from tests.helpers import synthetic_track, tone_track, write_audio

    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as writer:
        for n in range(count):
            path = write_audio(music / f"t{n}.wav", tone_track(n, 2.0, 8000, channels=1), 8000)
            windows = rng.normal(size=(2, writer.manifest.encoder.dim)).astype(np.float32)
            windows /= np.linalg.norm(windows, axis=1, keepdims=True)
            writer.store.put_track(synthetic_track(n, windows, path=str(path), tags={"artist": f"A{n}"}))
        writer.rebuild_index()
    return tmp_path / "cat", music


class _Enough(BaseException):
    """Ends MpdRadio.run from its report, as KeyboardInterrupt would."""


@pytest.mark.slow
@needs_mpd
def test_the_radio_waits_out_a_catalog_that_cannot_answer(tiny_model, tmp_path, monkeypatch):
    """A lost database (SQLAlchemy's OperationalError) and a refused request (a catalog error)
    are reported and tried again, as a lost MPD is; the queue fills once the catalog answers."""
    from sqlalchemy.exc import OperationalError

    import mertsearch.players.mpd as mpd_module
    from mertsearch.errors import VectorStoreError
    from tests.mpd_server import MpdServer

    monkeypatch.setattr(mpd_module, "BACKOFF_S", (0.01,))
    catalog, music = _synthetic_library(tmp_path, tiny_model, 6)
    server = MpdServer(tmp_path / "mpd", music)
    server.start()
    try:
        server.update()
        client = server.client()
        client.add("t0.wav")
        _play(client, 0)
        with Catalog.open(catalog) as cat:
            failures = [
                OperationalError("SELECT ...", {}, Exception("server closed the connection unexpectedly\nmore")),
                VectorStoreError("the Milvus vector store failed: collection not loaded"),
            ]
            answer = cat.radio

            def flaky(history, options):
                if failures:
                    raise failures.pop(0)
                return answer(history, options)

            monkeypatch.setattr(cat, "radio", flaky)
            lines = []

            def report(line: str) -> None:
                lines.append(line)
                if sum(line.startswith("added ") for line in lines) == 2:
                    raise _Enough

            radio = MpdRadio(cat, parse_address(f"127.0.0.1:{server.port}"), music_dir=music, ahead=2, report=report)
            with pytest.raises(_Enough):
                radio.run()
            radio.close()
        queue = _files(client)
    finally:
        server.stop()
    stalled = [line for line in lines if line.startswith("the catalog cannot answer")]
    assert stalled == [
        "the catalog cannot answer: server closed the connection unexpectedly; trying again in 0.01 s",
        "the catalog cannot answer: the Milvus vector store failed: collection not loaded; trying again in 0.01 s",
    ]
    assert len(queue) == 3 == len(set(queue))


@pytest.mark.slow
@needs_mpd
def test_a_long_history_is_asked_in_part_and_a_library_played_through_comes_round_again(tiny_model, tmp_path):
    """Months of plays: each radio call gets the last HISTORY songs only, and the radio keeps no
    more. Every track was played: the half played longest ago may come again."""
    from mertsearch.players.mpd import HISTORY
    from tests.mpd_server import MpdServer

    catalog, music = _synthetic_library(tmp_path, tiny_model, 6)
    server = MpdServer(tmp_path / "mpd", music)
    server.start()
    try:
        server.update()
        client = server.client()
        client.add("t0.wav")
        _play(client, 0)
        with Catalog.open(catalog) as cat:
            ids = {n: cat.track_id(music / f"t{n}.wav") for n in range(6)}
            asked = []
            answer = cat.radio

            def recorded(history, options):
                asked.append(len(history))
                return answer(history, options)

            cat.radio = recorded
            lines = []
            radio = MpdRadio(
                cat, parse_address(f"127.0.0.1:{server.port}"), music_dir=music, ahead=1, report=lines.append
            )
            radio.played.extend([ids[n] for n in (1, 2, 3, 4, 5)] * 400)  # t1 played longest ago, t5 last
            assert len(radio.played) <= HISTORY
            radio.connect()
            added = radio.top_up()
            radio.close()
    finally:
        server.stop()
    assert asked and max(asked) <= HISTORY
    assert "every song was played or queued: the 2 played longest ago may come again" in lines
    assert added in (["t1.wav"], ["t2.wav"]), lines
