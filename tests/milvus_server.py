"""A real Milvus standalone server (PyPI's ``milvus``: Milvus 2.3 with its own etcd, storing in a
folder) on loopback, for the Milvus tests and benchmark beside Milvus Lite."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

# In a process of its own (and its own process group, with the milvus and etcd it starts), so
# that a test's crash cannot leave it running: it stops on SIGTERM.
_SERVE = """
import signal, sys, threading
from milvus import default_server as server
server.set_base_dir(sys.argv[1])
server.listen_port = int(sys.argv[2])
stop = threading.Event()
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, lambda *_: stop.set())
server.start()
print("ready", flush=True)
stop.wait()
server.stop()
"""
# Its embedded etcd's peer port, which it does not let us choose: one such server a machine.
ETCD_PEER_PORT = 2380


@contextmanager
def milvus_server(work: Path) -> Iterator[str]:
    """Start a Milvus server with its data in ``work``: yields its URL (http://127.0.0.1:PORT)."""
    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", ETCD_PEER_PORT))
        except OSError:
            raise RuntimeError(
                f"port {ETCD_PEER_PORT} is taken: another Milvus server (its embedded etcd) runs on this machine"
            ) from None
    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(work / "data"), str(port)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        # Its start waits for the server's health for at most 180 s, then fails: the line comes.
        line = server.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the Milvus server did not start: {(work / 'server.log').read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # whatever of its group is left
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()


def peak_memory_mb(work: Path) -> float:
    """The peak resident memory (VmHWM) of the server's processes (those that name ``work``), summed."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if str(work).encode() not in (status.parent / "cmdline").read_bytes():
                continue
            total += next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            continue
    return round(total / 1024, 1)
