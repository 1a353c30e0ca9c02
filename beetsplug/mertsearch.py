"""mertsearch for beets: ``beet mertsearch index`` embeds the library's files into a catalog, and
``beet similar QUERY`` lists the library's items that sound most like the items QUERY matches.

beets finds plugins as modules of the ``beetsplug`` namespace package (no ``__init__.py``, so
every installed distribution can add modules to it); this one is named in beets' config.yaml::

    plugins: mertsearch
    mertsearch:
        catalog: ~/.local/share/mertsearch/beets   # default: "mertsearch" in beets' config folder
        model: mert-v1-95m                          # a new catalog's model (a name or a folder)
        layer: null                                 # a new catalog's layer (null: the model's own)
"""

from __future__ import annotations

import os

from beets import config as beets_config
from beets.dbcore.query import PathQuery
from beets.plugins import BeetsPlugin
from beets.ui import Subcommand, UserError, print_

from mertsearch import Catalog
from mertsearch.errors import CatalogNotFoundError, MertSearchError, TrackNotFoundError

# beet similar's default number of items.
DEFAULT_K = 10
# Seconds between the progress lines of beet mertsearch index.
PROGRESS_S = 10.0


class MertSearchPlugin(BeetsPlugin):
    def __init__(self) -> None:
        super().__init__("mertsearch")
        self.config.add(
            {
                "catalog": os.path.join(beets_config.config_dir(), "mertsearch"),
                "model": "mert-v1-95m",
                "layer": None,
            }
        )

    def commands(self) -> list[Subcommand]:
        manage = Subcommand("mertsearch", help="index the library's audio for beet similar: beet mertsearch index")
        manage.parser.usage = "%prog index [QUERY]"
        manage.func = self._manage
        similar = Subcommand("similar", help="items that sound like the items a query matches")
        similar.parser.usage = "%prog QUERY [-k N]"
        similar.parser.add_option("-k", type="int", default=DEFAULT_K, help=f"number of items (default {DEFAULT_K})")
        similar.parser.add_format_option(target="item")
        similar.func = self._similar
        return [manage, similar]

    # --- beet mertsearch index ------------------------------------------------------------------

    def _manage(self, lib, _opts, args: list[str]) -> None:
        if not args or args[0] != "index":
            raise UserError("usage: beet mertsearch index [QUERY]")
        items = list(lib.items(args[1:]))
        paths = [os.fsdecode(item.path) for item in items]
        present = [path for path in paths if os.path.isfile(path)]
        if len(present) < len(paths):
            print_(f"mertsearch: {len(paths) - len(present)} items have no file and are left out")
        if not present:
            raise UserError("no item with a file to index")
        with self._catalog(create=True) as cat:
            report = _guarded(cat.index_paths, present, progress=_Progress())
        print_(
            f"mertsearch: {report.added} added, {report.updated} updated, {report.retagged} retagged, "
            f"{report.moved} moved, {report.unchanged} unchanged, "
            f"{len(report.failed)} failed, in {report.elapsed:.0f} s"
        )
        for failure in report.failed:
            print_(f"  failed: {failure.path}: {failure.reason}")

    # --- beet similar QUERY -------------------------------------------------------------------

    def _similar(self, lib, opts, args: list[str]) -> None:
        if opts.k is None or opts.k < 1:
            raise UserError("-k must be 1 or more")
        seeds = list(lib.items(args))
        if not seeds:
            raise UserError(f"no item matches {' '.join(args)!r}")
        with self._catalog() as cat:
            seed_ids = [track for item in seeds if (track := _track_id(cat, item)) is not None]
            if not seed_ids:
                raise UserError(f"none of the {len(seeds)} items it matches is indexed: run beet mertsearch index")
            # Results whose files are not in the library are skipped: ask for more until k are found.
            asked = opts.k
            while True:
                results = _guarded(cat.similar, seed_ids, k=min(asked, 10000))
                found = [(result, item) for result in results if (item := _item(lib, result.path)) is not None]
                if len(found) >= opts.k or len(results) < asked or asked >= 10000:
                    break
                asked *= 4
        for result, item in found[: opts.k]:
            if result.similarity is not None:
                print_(f"{format(item)}  (similarity {result.similarity:.2f})")
            else:
                print_(f"{format(item)}  (score {result.score:.3f})")

    def _catalog(self, *, create: bool = False) -> Catalog:
        directory = self.config["catalog"].as_filename()
        try:
            return Catalog.open(directory, mmap=not create)
        except CatalogNotFoundError:
            if not create:
                raise UserError(f"no mertsearch catalog in {directory}: run beet mertsearch index") from None
        except MertSearchError as exc:
            raise UserError(f"mertsearch: {exc}") from None
        layer = self.config["layer"].get()
        return _guarded(Catalog.create, directory, model=self.config["model"].as_str(), layer=layer)


class _Progress:
    """A line now and then (beets has no progress bar of its own): at most every PROGRESS_S
    seconds, and at the end."""

    def __init__(self) -> None:
        self.shown_at = 0.0

    def __call__(self, progress) -> None:
        if progress.done < progress.total and progress.elapsed - self.shown_at < PROGRESS_S:
            return
        self.shown_at = progress.elapsed
        rate = progress.audio_seconds / max(progress.elapsed, 1e-9)
        print_(f"mertsearch: {progress.done}/{progress.total} files, {rate:.0f}x real time")


def _guarded(work, *args, **kwargs):
    """``work(*args, **kwargs)``, with mertsearch's errors as beets shows its own: one line, no traceback."""
    try:
        return work(*args, **kwargs)
    except MertSearchError as exc:
        raise UserError(f"mertsearch: {exc}") from None


def _track_id(cat: Catalog, item) -> int | None:
    try:
        return cat.track_id(os.fsdecode(item.path))
    except TrackNotFoundError:
        return None


def _item(lib, path: str):
    return next(iter(lib.items(PathQuery("path", os.fsencode(path)))), None)
