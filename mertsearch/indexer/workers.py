"""Run the reader (decoding) in worker processes while the model runs in this one.

Each worker has its own pipe, so one that hangs or crashes can be killed and replaced without
harming the others. A worker that says nothing for ``timeout_s`` seconds of the time this
process spends waiting for it is taken to hang: it is killed and its file fails with a reason.
With ``count=0`` the reader runs inline (no processes, no time limit).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait

from mertsearch.indexer.reader import FINAL

_PR_SET_PDEATHSIG = 1

# Reads one file: (path, known hashes) -> messages (see mertsearch.indexer.reader).
Read = Callable[[str, "tuple[str, str | None] | None"], Iterator[tuple]]


def default_workers() -> int:
    """One decoder per core, less the one that drives the model."""
    return max(1, (os.cpu_count() or 2) - 1)


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to kill this worker when its parent (``parent``, the indexer) dies, even by SIGKILL.

    Otherwise an orphaned worker would keep the inherited catalog lock (and its pipe) open.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # the indexer died before the request took effect
        os._exit(1)


def _serve(conn: Connection, read: Read, parent: int) -> None:
    die_with_parent(parent)
    import torch

    # The cores belong to the model and to the other workers.
    torch.set_num_threads(1)
    while (job := conn.recv()) is not None:
        for message in read(*job):
            conn.send(message)


class _Worker:
    def __init__(self, context, read: Read) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, read, os.getpid()), daemon=True, name="mertsearch-decoder"
        )
        self.process.start()
        child.close()
        self.busy = False
        self.silent_s = 0.0


class Workers:
    """A fixed set of slots, each reading one file at a time."""

    def __init__(self, read: Read, *, count: int, timeout_s: float) -> None:
        self.read = read
        self.timeout_s = timeout_s
        self.inline = count == 0
        self._current: Iterator[tuple] | None = None
        self._workers: list[_Worker] = []
        if not self.inline:
            # fork starts a worker in milliseconds (spawn re-imports torch: seconds); it is safe here
            # because workers run single-threaded and never touch the parent's model or database.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            self._context = multiprocessing.get_context(method)
            self._workers = [_Worker(self._context, read) for _ in range(count)]

    @property
    def slots(self) -> int:
        return 1 if self.inline else len(self._workers)

    def idle(self) -> list[int]:
        if self.inline:
            return [] if self._current is not None else [0]
        return [slot for slot, worker in enumerate(self._workers) if not worker.busy]

    def start(self, slot: int, path: str, known: tuple[str, str | None] | None) -> None:
        if self.inline:
            self._current = self.read(path, known)
            return
        worker = self._workers[slot]
        worker.conn.send((path, known))
        worker.busy, worker.silent_s = True, 0.0

    def poll(self, timeout: float) -> list[tuple[int, tuple]]:
        """Messages that are ready (waiting up to ``timeout`` s for one), as (slot, message)."""
        if self.inline:
            if self._current is None:
                return []
            message = next(self._current)
            if message[0] in FINAL:
                self._current = None
            return [(0, message)]
        busy = {worker.conn: slot for slot, worker in enumerate(self._workers) if worker.busy}
        if not busy:
            return []
        started = time.monotonic()
        ready = wait(list(busy), timeout)
        waited = time.monotonic() - started
        messages = []
        for conn, slot in busy.items():
            worker = self._workers[slot]
            if conn not in ready:
                worker.silent_s += waited
                continue
            worker.silent_s = 0.0
            try:
                message = conn.recv()
            except (EOFError, OSError):
                worker.process.join(5)  # its pipe closes as it dies: wait to learn how it died
                code = worker.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                message = ("failed", f"the decoder crashed on this file ({how})")
                self._replace(slot)
            if message[0] in FINAL:
                worker.busy = False
            messages.append((slot, message))
        return messages

    def stalled(self) -> list[tuple[int, tuple]]:
        """Kill the workers silent for longer than the time limit; a "failed" message for each."""
        out = []
        for slot, worker in enumerate(self._workers):
            if worker.busy and worker.silent_s > self.timeout_s:
                self._replace(slot)
                out.append((slot, ("failed", f"decoding stopped answering for {self.timeout_s:g} s (time limit)")))
        return out

    def _replace(self, slot: int) -> None:
        old = self._workers[slot]
        old.process.kill()
        old.process.join(5)
        old.conn.close()
        self._workers[slot] = _Worker(self._context, self.read)

    def close(self) -> None:
        for worker in self._workers:
            if worker.busy:  # stopped mid-file (an error or ^C): its work is not wanted
                worker.process.kill()
                continue
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
