"""A real Supysonic server (PyPI supysonic, served by waitress) on loopback, for the Subsonic
pass-through's tests and benchmark: its own config, database and user in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.servers import free_port

USER, PASSWORD = "listener", "secret pass"


def _tool(name: str) -> str:
    """A console script of the interpreter's own environment (the venv the tests run in)."""
    return str(Path(sys.executable).with_name(name))


def _environment(work: Path) -> dict:
    # Supysonic reads ./supysonic.conf (and ~/.supysonic): a home of its own keeps the user's out.
    return {**os.environ, "HOME": str(work)}


def _cli(work: Path, *args: str) -> None:
    subprocess.run([_tool("supysonic-cli"), *args], cwd=work, env=_environment(work), check=True, capture_output=True)


def scan(work: Path) -> None:
    """Scan the music folder of the server whose files are in ``work`` (again: new files are added)."""
    _cli(work, "folder", "scan", "--foreground", "Music")


@contextmanager
def supysonic(music: Path, work: Path) -> Iterator[str]:
    """Scan ``music`` as the folder "Music" and serve it: yields the base URL (without /rest)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "supysonic.conf").write_text(
        "[base]\n"
        f"database_uri = sqlite:///{work / 'supysonic.db'}\n"
        "[webapp]\n"
        f"cache_dir = {work / 'cache'}\n"
        "mount_webui = no\n"
        "[daemon]\n"
        f"socket = {work / 'daemon.sock'}\n"
        "run_watcher = no\n"
    )
    env = _environment(work)
    _cli(work, "user", "add", USER, "-p", PASSWORD)
    _cli(work, "folder", "add", "Music", str(music))
    scan(work)
    port = free_port()
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [_tool("supysonic-server"), "-S", "waitress", "-h", "127.0.0.1", "-p", str(port), "--threads", "8"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/rest/ping", params={"u": USER, "p": PASSWORD, "c": "t", "v": "1.12.0"}, timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"supysonic did not start: {(work / 'server.log').read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
