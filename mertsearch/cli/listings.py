"""How `models`, `info`, `duplicates` and `failures` print: fitted to a terminal's width, and
unbroken lines when piped (their --json is the same either way)."""

from __future__ import annotations

import os

from rich.text import Text

from mertsearch.cli.common import out, say
from mertsearch.cli.layout import Column, add_row, fitted, show


def show_models(models) -> None:
    """The known models; on a narrow terminal the columns a user needs least are left out."""
    columns = [
        Column("name"),
        Column("hub repo", drop=1),
        Column("revision", drop=4),
        Column("rate", justify="right"),
        Column("frames\nper s", justify="right", drop=3),
        Column("layers\nx dim", justify="right"),
        Column("context", justify="right", drop=2),
        Column("params", justify="right"),
        Column("default\nlayer", justify="right"),
        Column("licence", floor=12),
    ]
    for info in models:
        cells = [info.name, info.repo_id, (info.revision or "main")[:12], f"{info.sample_rate // 1000} kHz"]
        cells += [str(info.feature_rate), f"{info.num_layers} x {info.dim}", f"{info.context_s:g} s", info.params]
        add_row(columns, [*cells, str(info.default_layer), info.licence])
    show(out, columns)


def show_info(document: dict) -> None:
    """``key: value`` lines, nested values under dotted keys ("index.tracks.kind"); on a terminal
    the values wrap beside their keys."""
    fields = list(_flattened(document))
    if not out.is_terminal:
        for key, value in fields:
            out.print(Text.assemble((key, "bold"), f": {value}"), highlight=False)
        return
    keys = Column("", cells=[f"{key}:" for key, _ in fields])
    values = Column("", cells=[str(value) for _, value in fields], floor=20, overflow="fold")
    out.print(fitted([keys, values], out.width, header=False))


def _flattened(document: dict, prefix: str = ""):
    for key, value in document.items():
        if isinstance(value, dict):
            yield from _flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def show_duplicates(groups: list[dict]) -> None:
    """Each recording's track, then its other files after "=". On a terminal the paths are shown
    under the folder they share, which is named first; piped, in full."""
    if not groups:
        say("no duplicates")
        return
    paths = [f["path"] for group in groups for f in (group, *group["alternates"])]
    folder, relative = _under_folder(paths) if out.is_terminal else ("", {p: p for p in paths})
    if folder:
        out.print(f"under {folder}:", highlight=False)
    ids, files = Column("id", justify="right"), Column("file", floor=20, overflow="fold")
    for group in groups:
        ids.cells.append(str(group["track_id"]))
        files.cells.append(relative[group["path"]])
        for alternate in group["alternates"]:
            ids.cells.append(f"= {alternate['track_id']}")
            files.cells.append(relative[alternate["path"]])
    if out.is_terminal:
        out.print(fitted([ids, files], out.width, header=False))
        return
    for track_id, path in zip(ids.cells, files.cells, strict=True):
        indent = "  " if track_id.startswith("=") else ""
        out.print(Text.assemble(indent, (track_id, "" if indent else "bold"), f" {path}"), highlight=False)


def show_failures(rows: list[dict]) -> None:
    """Each file that could not be indexed and why: piped, ``path: reason`` lines; on a terminal a
    table of the paths under the folder they share, and the reasons."""
    if not rows:
        say("no failures")
        return
    if not out.is_terminal:
        for row in rows:
            out.print(f"{row['path']}: {row['reason']}", highlight=False)
        return
    folder, relative = _under_folder([row["path"] for row in rows])
    if folder:
        out.print(f"under {folder}:", highlight=False)
    files = Column("file", floor=20, overflow="fold", cells=[relative[row["path"]] for row in rows])
    reasons = Column("reason", floor=20, cells=[row["reason"] for row in rows])
    out.print(fitted([files, reasons], out.width))


def _under_folder(paths: list[str]) -> tuple[str, dict[str, str]]:
    """The folder all ``paths`` share ("" if none but the root) and each path relative to it."""
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # relative and absolute paths mixed, or other drives
        folder = ""
    if folder in ("", os.sep):
        return "", {p: p for p in paths}
    return folder, {p: os.path.relpath(p, folder) for p in paths}
