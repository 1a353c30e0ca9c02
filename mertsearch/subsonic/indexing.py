"""New music made sonic without a manual step: the upstream's songs whose files lie under a
``--subsonic-root`` but that the catalog lacks are indexed in the background, by ``mertsearch
index`` in a process of its own (the catalog's one writer, waiting its turn at the writer lock
as any other), a batch of files at a time, so that the server stays responsive and the progress
can be told."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)
BATCH = 100  # files per `mertsearch index` run (each loads the model): progress after each
WRITER_WAIT_S = 600  # how long a batch waits for another writer of the catalog (a user's `index`)


@dataclass
class Progress:
    queued: int = 0  # files found to index, this run
    done: int = 0  # of those, handled (added, failed or found unchanged)
    added: int = 0
    failed: int = 0
    running: bool = False


class NewMusic:
    """Indexes the files of songs the catalog lacks, one run at a time."""

    def __init__(self, catalog: str, roots: Sequence[str], options: Sequence[str] = ()) -> None:
        self.catalog, self.roots, self.options = catalog, list(roots), list(options)
        self.progress = Progress()
        self._task: asyncio.Task | None = None

    def files(self, relative: Sequence[str], failed: set[str]) -> list[str]:
        """The files under a root that ``relative`` paths (songs' paths in their music folder)
        name, less those that failed before (a rerun skips them: not worth a model's loading)."""
        found = []
        for path in relative:
            where = next((p for root in self.roots if os.path.isfile(p := os.path.join(root, path))), None)
            if where is not None and where not in failed:
                found.append(where)
        return found

    def start(self, files: list[str], then) -> bool:
        """Index ``files`` in the background, then await ``then()`` (a sync); False while a run
        is still going (the next sync finds what it left)."""
        if not files or (self._task is not None and not self._task.done()):
            return False
        self.progress = Progress(queued=len(files), running=True)
        self._task = asyncio.create_task(self._run(files, then))
        return True

    async def _run(self, files: list[str], then) -> None:
        log.info("subsonic: indexing %d new songs' files", len(files))
        try:
            for start in range(0, len(files), BATCH):
                await self._batch(files[start : start + BATCH])
                done = self.progress
                log.info("subsonic: indexed %d of %d new files (%d failed)", done.done, done.queued, done.failed)
        except Exception:  # noqa: BLE001 - the next sync starts again from what is left
            log.exception("subsonic: indexing the new songs' files failed")
        finally:
            self.progress.running = False
        await then()

    async def _batch(self, files: list[str]) -> None:
        command = [sys.executable, "-m", "mertsearch.cli", "index", "--catalog", self.catalog, "--json"]
        command += ["--wait", str(WRITER_WAIT_S), *self.options, "--", *files]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"mertsearch index exited with {process.returncode}: {err.decode()[-2000:]}")
        report = json.loads(out)
        self.progress.done += len(files)
        self.progress.added += report["added"]
        self.progress.failed += len(report["failed"])

    def as_dict(self) -> dict:
        return asdict(self.progress)
