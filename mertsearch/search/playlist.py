"""Search results as an extended M3U playlist, which most players open."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mertsearch.search.engine import SearchResult


def write_m3u(results: Sequence[SearchResult], path: str | os.PathLike) -> Path:
    """Write ``results`` in rank order; each entry names artist - title and its duration."""
    target = Path(path)
    lines = ["#EXTM3U"]
    for result in results:
        name = " - ".join(part for part in (result.artist, result.title) if part) or Path(result.path).stem
        lines.append(f"#EXTINF:{round(result.duration)},{name}")
        lines.append(result.path)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    return target
