"""Tables that fit the terminal's width, and tab-separated lines where the output is piped.

A rich Table left to itself shrinks every column alike when the terminal is narrow, folding
numbers, times and paths into slivers. Here the columns that may give way are named: text wraps
at words, file names and paths are cut in the middle, and whole columns are left out, least
useful first, before anything else is squeezed below its floor.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 2  # spaces between columns
ELLIPSIS = "…"


@dataclass(frozen=True)
class Whole:
    """A cell never wrapped (a file name, a path): cut in the middle where the column is narrower."""

    text: str
    prefix: str = ""  # kept whole before the text, as "= " before a duplicate file

    def cells(self) -> int:
        return cell_len(self.prefix + self.text)


Cell = str | Whole


@dataclass
class Column:
    header: str  # "\n" between the lines of a two-line header
    cells: list[Cell] = field(default_factory=list)
    justify: str = "left"
    floor: int | None = None  # None: as wide as its widest cell; else it may wrap or be cut down to this
    drop: int = 0  # 0: always shown; else left out where the table is too wide, highest first
    names: int = 0  # paths: file names stay whole until only columns ranked this or lower are left to drop
    overflow: str = "ellipsis"  # a word wider than the column: cut with "…", or "fold"ed onto more lines

    def natural(self) -> int:
        widths = [cell_len(line) for line in self.header.split("\n")]
        for cell in self.cells:
            widths += [cell.cells()] if isinstance(cell, Whole) else [cell_len(line) for line in cell.split("\n")]
        return max(widths)

    def least(self, names: bool) -> int:
        """The narrowest this flexible column may be: its floor and, with ``names``, wide enough for
        every file name whole after the first letters of its folders."""
        need = [self.floor or 1]
        for cell in self.cells if names and self.names else ():
            if isinstance(cell, Whole):
                folders, sep, name = cell.text.rpartition(os.sep)
                start = min(cell_len(folders), 3) + len(ELLIPSIS) if folders else 0
                need.append(min(cell.cells(), cell_len(cell.prefix + sep + name) + start))
        return max(need)


def add_row(columns: Sequence[Column], cells: Sequence[Cell]) -> None:
    for column, cell in zip(columns, cells, strict=True):
        column.cells.append(cell)


def fitted(columns: Sequence[Column], width: int | None, *, header: bool = True) -> Table:
    """A table of ``columns`` no wider than ``width`` (None: as wide as its cells). What gives way,
    in turn: flexible columns down to their floors, columns by ``drop`` rank, file names kept whole
    (once the columns left are ranked ``names`` or lower), flexible columns down to 4 cells."""
    kept = list(columns)
    names = max((c.names for c in kept), default=0)
    level = "names" if names else "floor"
    while width is not None and (widths := _shrunk(kept, width, level)) is None:
        ranks = [c.drop for c in kept if c.drop]
        if level == "names" and max(ranks, default=0) <= names:
            level = "floor"
        elif ranks:
            kept.remove(max((c for c in kept if c.drop), key=lambda c: c.drop))
        else:
            widths = _shrunk(kept, width, "hard") or [c.natural() for c in kept]
            break
    if width is None:
        widths = [c.natural() for c in kept]
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold", show_header=header)
    for column, size in zip(kept, widths, strict=True):
        table.add_column(column.header, justify=column.justify, width=size, no_wrap=column.floor is None)
    for row in range(len(kept[0].cells) if kept else 0):
        table.add_row(*(_render(c, c.cells[row], size) for c, size in zip(kept, widths, strict=True)))
    return table


def show(console: Console, columns: Sequence[Column]) -> None:
    """On a terminal, the table fitted to its width; piped, a header line and a tab-separated line
    per row, never folded."""
    if console.is_terminal:
        console.print(fitted(columns, console.width))
        return
    lines = [tsv(c.header.replace("\n", " ") for c in columns)]
    for row in range(len(columns[0].cells) if columns else 0):
        lines.append(tsv(_plain(c.cells[row]) for c in columns))
    console.file.write("".join(line + "\n" for line in lines))


def show_wide(console: Console, columns: Sequence[Column]) -> None:
    """The table at the full width of its cells, however wide the terminal: nothing folded or cut
    (``less -S`` scrolls it)."""
    width = sum(c.natural() for c in columns) + GAP * (len(columns) - 1)
    wide = Console(
        file=console.file, width=width, color_system=console.color_system, force_terminal=console.is_terminal
    )
    wide.print(fitted(columns, None))


def _plain(cell: Cell) -> str:
    return cell.prefix + cell.text if isinstance(cell, Whole) else cell


def _shrunk(columns: list[Column], width: int, level: str) -> list[int] | None:
    """Column widths that fit ``width``, taken from the widest flexible columns first, none below
    its floor at ``level`` ("names", "floor" or "hard": 4 cells); None if the floors do not fit."""
    natural = [c.natural() for c in columns]
    budget = width - GAP * (len(columns) - 1)
    if sum(natural) <= budget:
        return natural
    floors = [
        size if c.floor is None else min(size, 4 if level == "hard" else c.least(level == "names"))
        for c, size in zip(columns, natural, strict=True)
    ]
    if sum(floors) > budget:
        return None
    # The widest cap on flexible columns that fits: each as wide as it needs up to the cap.
    for cap in range(max(natural), 0, -1):
        widths = [max(low, min(size, cap)) for low, size in zip(floors, natural, strict=True)]
        if sum(widths) <= budget:
            return widths
    return floors


def _render(column: Column, cell: Cell, width: int) -> Text:
    if isinstance(cell, Whole):
        room = max(width - cell_len(cell.prefix), 1)
        return Text(cell.prefix + elide(cell.text, room), no_wrap=True, overflow="ellipsis")
    # Wraps at spaces; a single word wider than the column ends in "…" unless the column folds.
    return Text(cell, overflow=column.overflow)


def elide(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, cut in the middle: a path keeps its file name and the
    start of its folders, which is what tells it apart from the others ("recordings fr…/take 3.wav")."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    folders, sep, name = text.rpartition(os.sep)
    room = width - 1 - cell_len(sep + name)
    if folders and room >= min(3, cell_len(folders)):
        return _fit_cells(folders, room) + ELLIPSIS + sep + name
    tail = (width - 1) // 2
    return _fit_cells(text, width - 1 - tail) + ELLIPSIS + _fit_cells(text[::-1], tail)[::-1]


def _fit_cells(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` cells (wide characters count two)."""
    used = 0
    for index, char in enumerate(text):
        used += cell_len(char)
        if used > width:
            return text[:index]
    return text


def short_paths(paths: Sequence[str]) -> dict[str, str]:
    """The end of each path that tells it apart from the others: its file name, with as many of its
    parent folders as it takes where another path ends the same way."""
    parts = {path: PurePath(path).parts or (path,) for path in paths}
    depth = dict.fromkeys(parts, 1)
    while True:
        ending = defaultdict(list)
        for path, n in depth.items():
            ending[parts[path][-n:]].append(path)
        longer = [p for same in ending.values() if len(same) > 1 for p in same if depth[p] < len(parts[p])]
        for path in longer:
            depth[path] += 1
        if not longer:
            return {path: os.path.join(*parts[path][-depth[path] :]) for path in parts}


def tsv(fields: Sequence[object]) -> str:
    """One line of tab-separated fields; a tab or line break inside a field is written as \\t or \\n."""
    escape = {9: "\\t", 10: "\\n", 13: "\\r"}
    return "\t".join(str(value).translate(escape) for value in fields)
