"""A real MPD (Debian's mpd binary) for the radio's tests: its own music folder, database, state file,
a free loopback port and a local socket, playing into a null output."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import mpd

from tests.servers import free_port

MPD_BINARY = shutil.which("mpd") or "/usr/bin/mpd"


class MpdServer:
    def __init__(self, folder: Path, music: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "playlists").mkdir(exist_ok=True)
        self.folder, self.music, self.port = folder, music, free_port()
        self.socket = folder / "socket"
        self.config = folder / "mpd.conf"
        self.config.write_text(
            f'music_directory "{music}"\n'
            f'playlist_directory "{folder / "playlists"}"\n'
            f'db_file "{folder / "database"}"\n'
            # The queue and the current song come back after a restart, as with Debian's own set-up.
            f'state_file "{folder / "state"}"\n'
            f'log_file "{folder / "log"}"\n'
            f'bind_to_address "127.0.0.1"\n'
            f'bind_to_address "{self.socket}"\n'
            f'port "{self.port}"\n'
            'auto_update "no"\n'
            'zeroconf_enabled "no"\n'
            'audio_output {\n  type "null"\n  name "silence"\n}\n'
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MPD_BINARY, "--no-daemon", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client().disconnect()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mpd exited: {self.process.stderr.read().decode()}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """As a service manager stops it (SIGTERM), so it writes its state file."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def client(self) -> mpd.MPDClient:
        client = mpd.MPDClient()
        client.timeout = 10
        client.connect("127.0.0.1", self.port)
        return client

    def update(self) -> None:
        """Scan the music folder and wait until MPD's database holds it."""
        client = self.client()
        client.update()
        deadline = time.monotonic() + 60
        while "updating_db" in client.status() or not client.stats().get("songs", "0") != "0":
            assert time.monotonic() < deadline, "MPD did not finish scanning the music"
            time.sleep(0.1)
        client.disconnect()


def environment() -> dict:
    """The environment of a command run as a child: this checkout first on the path, output unbuffered."""
    root = str(Path(__file__).resolve().parent.parent)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
