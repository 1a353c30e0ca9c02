"""Serving a track's audio file: only the very file that was indexed.

A path in the catalog is only a name. On a shared disk someone may replace an indexed file (or a
folder above it) by a symbolic link to a private file; served by name, that file would go out as
audio. So the file is opened once, without following a final link, and that open file is checked
and sent: it must lie under the catalog's folders (as they resolved when the server started), be a
regular file, and have the size and modification time that the database recorded.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
from starlette.responses import FileResponse


class FileRefused(Exception):
    """The file cannot be served; ``status`` is 404 (gone) or 409 (not the file that was indexed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def top_folders(paths: Iterable[str]) -> list[str]:
    """The folders holding ``paths``, without those inside another of them."""
    kept: list[str] = []
    for folder in sorted({os.path.dirname(path) for path in paths}):
        if not kept or not _under(folder, kept[-1]):
            kept.append(folder)
    return kept


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class IndexedFolders:
    """The catalog's folders, each resolved (symbolic links and all) once: when the server starts,
    or for a folder indexed later, when first asked for."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._resolved: dict[str, str] = {}
        self._lock = threading.Lock()
        self.add(paths)

    def add(self, paths: Iterable[str]) -> None:
        for folder in top_folders(paths):
            if self.real_root_of(folder) is None:
                real = os.path.realpath(folder)
                with self._lock:
                    self._resolved[folder] = real

    def real_root_of(self, path: str) -> str | None:
        """The resolved folder that ``path`` lies in, or None."""
        folder, parent = path, os.path.dirname(path)
        while True:
            if folder in self._resolved:
                return self._resolved[folder]
            if parent == folder:
                return None
            folder, parent = parent, os.path.dirname(parent)


def open_indexed(path: str, *, size: int, mtime_ns: int, folders: IndexedFolders):
    """The indexed file at ``path``, opened for reading, and its stat; FileRefused when what is there
    now is not that file."""
    root = folders.real_root_of(path)
    if root is None:
        raise FileRefused(409, "the file lies outside the catalog's indexed folders")
    real = os.path.realpath(path)
    if not _under(real, root):
        raise FileRefused(409, "a link now leads the file's path outside the catalog's indexed folders")
    try:
        # No final link, and no blocking on a pipe put in the file's place.
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileRefused(404, "the file is gone from disk") from None
    except OSError as exc:
        raise FileRefused(409, f"the file cannot be opened ({os.strerror(exc.errno or 0)})") from None
    file = os.fdopen(fd, "rb")
    try:
        opened = _opened_path(fd)
        if opened is not None and opened != real:
            raise FileRefused(409, "the file's path changed while it was opened")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(409, "the file is not a regular file now")
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            raise FileRefused(409, "the file changed since it was indexed (index it again)")
    except BaseException:
        file.close()
        raise
    return file, info


def _opened_path(fd: int) -> str | None:
    """Where the open file is, as the kernel says (Linux), to catch a folder swapped between the
    path's resolution and the open; None where the system cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


class OpenFileResponse(FileResponse):
    """Starlette's FileResponse (range requests, HEAD, ETag) over a file already opened and checked,
    instead of opening the path again."""

    def __init__(self, file, info: os.stat_result, *, name: str, media_type: str) -> None:
        super().__init__(
            Path(name), stat_result=info, media_type=media_type, filename=name, content_disposition_type="inline"
        )
        self._file = file

    async def __call__(self, scope, receive, send) -> None:
        # Never hand the server a path to send by itself ("pathsend"): only the open file is sent.
        scope = {**scope, "extensions": {k: v for k, v in scope.get("extensions", {}).items() if "pathsend" not in k}}
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._file.close()

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        self._file.seek(0)
        yield anyio.wrap_file(self._file)
