"""Find the audio files under the paths a user gives."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mertsearch.errors import InvalidArgumentError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".aif", ".aiff", ".wma", ".webm", ".mka"}
)


def surely_gone(path: str) -> bool:
    """Whether the file is surely gone: a file that cannot be looked at (permissions, an I/O
    error of a failing disk or share) is not taken for deleted."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def discover_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Audio files under ``paths`` (absolute, sorted, each once).

    Folders are walked recursively for files with an audio extension; a file named directly is
    taken whatever its extension. Symlinked folders are not followed, so links cannot loop.
    """
    found: set[Path] = set()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_file():
            found.add(path.absolute())
        elif path.is_dir():
            for root, _dirs, files in os.walk(path, followlinks=False):
                for name in files:
                    if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                        found.add((Path(root) / name).absolute())
        else:
            raise InvalidArgumentError(f"no such file or folder: {given}")
    return sorted(found)
