"""A catalog's duplicate links: the rule in force (fitted again as the catalog changes), the links
of an ingest checked again when the rule moved during it, and every link decided again (repair)."""

from __future__ import annotations

from collections.abc import Sequence

from mertsearch.catalog.core import Core
from mertsearch.indexer.copies import COPY_TRACKS, measure_copies
from mertsearch.indexer.duplicates import CopyDistances, DuplicateRule, stored_rule
from mertsearch.indexer.relink import DuplicateCheck, Relinked, fit_and_store, fit_rule, relink

# Files named one by one in what repair reports, per kind of change; the rest are counted.
SHOWN = 20


def current_rule(cat: Core, *, writer: bool, measure: bool = False) -> DuplicateRule:
    """The catalog's rule, fitted again when it has none, its track count moved by a tenth since,
    or (``measure``) its copies were measured again; the writer stores the new fit, a reader only
    uses it. ``measure``, for an ingest whose model is loaded anyway, measures copies of the
    catalog's tracks when the rule holds no measurement that applies (see ``copy_distances``)."""
    rule = stored_rule(cat.store)
    tracks = cat.store.count("tracks")
    found = copy_distances(cat, rule, tracks, measure=measure)
    if rule is not None and not rule.stale(tracks) and rule.copies == found:
        return rule
    if writer:
        return fit_and_store(cat.store, cat.indexes.tracks, cat.transform, found)
    return fit_rule(cat.store, cat.indexes.tracks, cat.transform, found)


def copy_distances(cat: Core, rule: DuplicateRule | None, tracks: int, *, measure: bool) -> CopyDistances | None:
    """How far copies of the catalog's tracks lie, for its rule: the stored measurement while it
    applies (it was made on the searched layers, and on as many tracks as wanted or the catalog
    has not changed since); with ``measure`` a new one where it does not and the catalog holds
    files it could link. Readers, reindex and repair never run the model for it: without a
    measurement that applies, the rule is fitted on the distinct tracks alone until an ingest
    measures."""
    stored = rule.copies if rule is not None else None
    if stored is not None and stored.layers != list(cat.manifest.encoder.layers):
        stored = None  # measured on the vectors of other layers
    if not measure or (stored is not None and (stored.tracks >= COPY_TRACKS or stored.catalog_tracks == tracks)):
        return stored
    found = measure_copies(cat.store, cat.encoder, cat.windows)
    return stored if found is None else found


def rule_due(cat: Core) -> bool:
    """Whether the stored rule no longer serves (see ``current_rule``): there is none, the track
    count moved by a tenth since its fit, or the copies it was fitted on were measured on other layers."""
    rule = stored_rule(cat.store)
    if rule is None:
        return True
    tracks = cat.store.count("tracks")
    return rule.stale(tracks) or copy_distances(cat, rule, tracks, measure=False) != rule.copies


def refit(cat: Core) -> DuplicateRule:
    """Fit the rule again now (the vectors changed kind: other layers, another transform)."""
    found = copy_distances(cat, stored_rule(cat.store), cat.store.count("tracks"), measure=False)
    return fit_and_store(cat.store, cat.indexes.tracks, cat.transform, found)


def after_ingest(cat: Core, used: DuplicateRule, stored: Sequence[int], *, measure: bool) -> None:
    """Once an ingest is done: fit the rule again if the catalog changed enough (``measure``: the
    model is loaded, and copies are measured if need be), and if that moved it, decide the links
    of the files stored in this run again (they were decided under ``used``)."""
    rule = current_rule(cat, writer=True, measure=measure)
    if rule != used and stored:
        relink(cat.store, cat.indexes.tracks, cat.transform, rule, stored)


def checker(cat: Core) -> DuplicateCheck:
    """The decision an ingest makes, against this catalog as it is (for evaluation; writes nothing)."""
    return DuplicateCheck(cat.store, cat.indexes.tracks, cat.transform, current_rule(cat, writer=False))


def relink_all(cat: Core) -> list[str]:
    """Fit the rule and decide every link again; what changed, in words (the caller holds the writer lock)."""
    before = stored_rule(cat.store)
    rule = refit(cat)
    done = [] if rule == before else [f"fitted the duplicate rule: {rule.describe()}"]
    changes = relink(cat.store, cat.indexes.tracks, cat.transform, rule)
    return done + _described(cat, changes)


def _described(cat: Core, changes: list[Relinked]) -> list[str]:
    involved = {i for change in changes for i in (change.track_id, change.before, change.after) if i is not None}
    paths = {i: row.path for i, row in cat.store.tracks_by_id(sorted(involved)).items()}
    kinds = {
        "linked {} file(s) to another file of the same recording": [
            f"  {paths[c.track_id]} = {paths[c.after]}" for c in changes if c.before is None
        ],
        "moved {} file(s) to the recording's new leading file": [
            f"  {paths[c.track_id]} = {paths[c.after]} (was = {paths[c.before]})"
            for c in changes
            if c.before is not None and c.after is not None
        ],
        "unlinked {} file(s) that do not hold the recording they were linked to": [
            f"  {paths[c.track_id]} (was = {paths[c.before]})" for c in changes if c.after is None
        ],
    }
    lines = []
    for header, rows in kinds.items():
        if rows:
            lines += [header.format(len(rows)), *rows[:SHOWN]]
            if len(rows) > SHOWN:
                lines.append(f"  ... and {len(rows) - SHOWN} more (mertsearch duplicates lists every group)")
    return lines
