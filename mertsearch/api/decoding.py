"""Uploads are decoded in worker processes, never in the server's own.

Decoding runs FFmpeg's native code on whatever a client sends: a slow file must not hold the model's
lock (every search would wait), and a file that crashes the decoder must not take the server down.
So each upload goes to one of a few worker processes, each with a pipe of its own: one that dies or
hangs costs only its own upload (a 422), and is replaced. Workers are started by a fork server (a
clean, single-threaded process), not forked from the server with its model and threads.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np

from mertsearch.errors import AudioDecodeError, MertSearchError

# (upload bytes, *, sample_rate, start, end, max_seconds) -> mono float32 samples; a module-level
# function, since it is sent to the workers by name.
Decode = Callable[..., np.ndarray]


def decode_upload(
    data: bytes, *, sample_rate: int, start: float | None, end: float | None, max_seconds: float
) -> np.ndarray:
    from mertsearch.audio.decode import decode_audio

    return decode_audio(data, sample_rate=sample_rate, start=start, end=end, max_seconds=max_seconds)


def _serve(conn: Connection, decode: Decode) -> None:
    from mertsearch.indexer.workers import die_with_parent

    die_with_parent(None)  # the fork server: it ends with the server
    import torch

    import mertsearch.audio.decode  # noqa: F401 - FFmpeg's bindings load now, not during the first upload

    torch.set_num_threads(1)  # the cores belong to the model and the other workers
    while (job := conn.recv()) is not None:
        data, options = job
        try:
            conn.send(("samples", decode(data, **options)))
        except MertSearchError as exc:
            conn.send(("error", exc))
        except Exception as exc:  # noqa: BLE001 - anything else a decoder raises is still a bad upload
            conn.send(("error", AudioDecodeError(f"cannot decode audio ({type(exc).__name__})")))


class _Worker:
    def __init__(self, context, decode: Decode) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, decode), daemon=True, name="mertsearch-upload")
        self.process.start()
        child.close()

    def stop(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class DecodersBusy(Exception):
    """No decoder came free within the wait allowed."""


class UploadDecoders:
    """``workers`` processes that decode one upload each at a time; a request waits for a free one,
    at most ``wait_s`` (then DecodersBusy): a waiting request holds a thread and its upload."""

    def __init__(
        self, *, workers: int, decode: Decode = decode_upload, timeout_s: float = 120.0, wait_s: float = 30.0
    ) -> None:
        self._decode = decode
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self._context = multiprocessing.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        for _ in range(workers):
            self._add()

    def _add(self) -> None:
        worker = _Worker(self._context, self._decode)
        self._all.append(worker)
        self._idle.put(worker)

    def decode(self, data: bytes, **options) -> np.ndarray:
        try:
            worker = self._idle.get(timeout=self.wait_s)
        except queue.Empty:
            raise DecodersBusy(f"every decoder stayed busy for {self.wait_s:g} s") from None
        try:
            worker.conn.send((data, options))
            if not worker.conn.poll(self.timeout_s):
                raise _Lost(f"cannot decode audio: decoding took longer than {self.timeout_s:g} s")
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            self._lose(worker)
            worker.process.join(5)
            code = worker.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            raise AudioDecodeError(f"cannot decode audio: the decoder crashed on this upload ({how})") from None
        except _Lost as exc:
            self._lose(worker)
            raise AudioDecodeError(str(exc)) from None
        self._idle.put(worker)
        if kind == "error":
            raise value
        return value

    def _lose(self, worker: _Worker) -> None:
        worker.stop()
        self._all.remove(worker)
        self._add()

    def close(self) -> None:
        for worker in self._all:
            worker.process.kill()
        for worker in self._all:
            worker.process.join(5)
            worker.conn.close()
        self._all = []


class _Lost(Exception):
    pass
