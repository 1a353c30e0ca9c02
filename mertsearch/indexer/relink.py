"""Duplicate links over a whole catalog, from its stored vectors: fitting the rule (how close the
catalog's distinct tracks come) and linking again the files of one recording under it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mertsearch.indexer.duplicates import (
    DURATION_TOLERANCE_S,
    FIT_TRACKS,
    META_KEY,
    NEIGHBOURS,
    CopyDistances,
    DuplicateRule,
    Windows,
    aligned_distance,
    find_leader,
)
from mertsearch.storage.store import MetadataStore, from_blob
from mertsearch.storage.vector_index import VectorIndex

# Tracks handled together: their windows and their neighbours' are read in one query.
BATCH = 32

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Relinked:
    """A track whose duplicate link changed: the leader it had and the one it has now (None: it leads)."""

    track_id: int
    before: int | None
    after: int | None


def neighbours(
    index: VectorIndex, store: MetadataStore, transform: Transform, ids: Sequence[int]
) -> dict[int, list[int]]:
    """The nearest other tracks of each of ``ids`` in the track index, nearest first."""
    rows = store.tracks_by_id(ids)
    present = [i for i in ids if i in rows]
    if not present:
        return {}
    vectors = transform(np.stack([from_blob(rows[i].vector) for i in present]))
    _scores, found = index.search(vectors, NEIGHBOURS + 1)
    return {i: [int(j) for j in row if j >= 0 and j != i] for i, row in zip(present, found, strict=True)}


def _windows(store: MetadataStore, ids: Iterable[int], durations: dict[int, float]) -> dict[int, Windows]:
    return {
        i: Windows.stored(times, vectors, durations[i]) for i, (times, vectors) in store.windows_of(list(ids)).items()
    }


def fit_rule(
    store: MetadataStore, index: VectorIndex, transform: Transform, copies: CopyDistances | None = None
) -> DuplicateRule:
    """The rule for this catalog, whose copies lie at ``copies`` (see mertsearch.indexer.copies):
    each track of a fixed sample (up to FIT_TRACKS) against its nearest tracks whose durations
    differ by more than copies' do, so that they surely hold other recordings; the closest of
    those per track (see DuplicateRule.fitted)."""
    links = store.track_links()
    durations = {i: duration for i, duration, _ in links}
    ids = [i for i, _, _ in links]
    if len(ids) < 2:
        return DuplicateRule.fitted([], catalog_tracks=len(ids), copies=copies)
    chosen = ids
    if len(ids) > FIT_TRACKS:
        chosen = sorted(np.random.default_rng(0).choice(ids, FIT_TRACKS, replace=False).tolist())
    nearest = []
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        others = {
            i: [j for j in near if j in durations and abs(durations[j] - durations[i]) > DURATION_TOLERANCE_S]
            for i, near in neighbours(index, store, transform, batch).items()
        }
        windows = _windows(store, {*others, *(j for near in others.values() for j in near)}, durations)
        for i, near in others.items():
            # As much room to shift as any two files whose durations fit get: the closest they could come.
            distances = [
                aligned_distance(windows[i], windows[j], most_shift_s=DURATION_TOLERANCE_S)[0]
                for j in near
                if i in windows and j in windows
            ]
            if distances:
                nearest.append(min(distances))
    return DuplicateRule.fitted(nearest, catalog_tracks=len(ids), copies=copies)


def fit_and_store(
    store: MetadataStore, index: VectorIndex, transform: Transform, copies: CopyDistances | None = None
) -> DuplicateRule:
    rule = fit_rule(store, index, transform, copies)
    store.update_meta({META_KEY: rule.as_meta()})
    return rule


def relink(
    store: MetadataStore,
    index: VectorIndex,
    transform: Transform,
    rule: DuplicateRule,
    track_ids: Sequence[int] | None = None,
) -> list[Relinked]:
    """Link the files of one recording again under ``rule``; returns what changed.

    The links of ``track_ids`` (default: every track) are decided again: each against its
    nearest tracks whose duration fits. Files that the rule joins, directly or through another
    file, form one group, together with the groups the other tracks already form; a group is
    led by the member that leads most of it now (the oldest track among equals), so links that
    still hold stay as they are and a second run changes nothing.

    The rule's verdicts (the slow part) come first; the groups are then formed from the links
    as they are when written, read again under the links' lock (see DuplicateLinks.relink_tracks),
    so what another writer linked meanwhile joins its group rather than being overwritten.
    """
    durations = {i: duration for i, duration, _ in store.track_links()}
    targets = sorted(durations if track_ids is None else {int(i) for i in track_ids if int(i) in durations})
    joined = []
    for start in range(0, len(targets), BATCH):
        batch = targets[start : start + BATCH]
        fitting = {
            i: [j for j in near if j in durations and abs(durations[j] - durations[i]) <= DURATION_TOLERANCE_S]
            for i, near in neighbours(index, store, transform, batch).items()
        }
        windows = _windows(store, {*fitting, *(j for near in fitting.values() for j in near)}, durations)
        for i, near in fitting.items():
            for j in near:
                if i in windows and j in windows and rule.links(windows[i], windows[j]) is not None:
                    joined.append((i, j))
    before, after = store.relink_tracks(lambda links: _regrouped(links, set(targets), joined))
    return [Relinked(i, before[i], after[i]) for i in sorted(after)]


def _regrouped(links: list[tuple[int, float, int | None]], chosen: set[int], joined: list[tuple[int, int]]) -> dict:
    """{track: its new leader} for the tracks whose leader changes: the groups the tracks not
    ``chosen`` form now, joined by the rule's verdicts on the ``joined`` pairs (see relink)."""
    current = {i: leader for i, _, leader in links}
    parent = {i: i for i in current}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    for i, leader in current.items():  # the groups of the tracks not decided again stay
        if leader is not None and leader in current and i not in chosen:
            join(i, leader)
    for i, j in joined:
        if i in current and j in current:  # neither removed meanwhile
            join(i, j)
    groups: dict[int, list[int]] = {}
    for i in current:
        groups.setdefault(root(i), []).append(i)
    changes = {}
    for members in groups.values():
        leader = _leader(members, current)
        for i in members:
            after = None if i == leader else leader
            if after != current[i]:
                changes[i] = after
    return changes


def _leader(members: list[int], current: dict[int, int | None]) -> int:
    """The member that leads most of the group now; the oldest among equals."""
    inside = set(members)
    votes: dict[int, int] = {}
    for i in members:
        lead = current[i] if current[i] is not None else i
        if lead in inside:
            votes[lead] = votes.get(lead, 0) + 1
    return min(members, key=lambda i: (-votes.get(i, 0), i))


@dataclass(frozen=True)
class PairCheck:
    """Two catalog tracks compared as a duplicate would be: their aligned distance (whatever their
    durations), whether the rule links them, and whether the catalog groups them now."""

    a: int
    b: int
    distance: float
    linked: bool
    grouped: bool


@dataclass(frozen=True)
class DuplicateCheck:
    """The decision an ingest makes, against a catalog as it is, without changing it."""

    store: MetadataStore
    index: VectorIndex
    transform: Transform
    rule: DuplicateRule

    def leader_of(self, vector: np.ndarray, windows: Windows) -> int | None:
        """The leading track of the recording a file with these (raw) vectors would be linked to."""
        transformed = self.transform(vector[None, :])[0]
        return find_leader(self.index, self.store, exclude=None, vector=transformed, windows=windows, rule=self.rule)

    def distance(self, windows: Windows, track_id: int) -> float:
        """The aligned distance of a file's windows to a catalog track's (inf when it is gone)."""
        rows = self.store.tracks_by_id([track_id])
        stored = self.store.windows_of([track_id])
        if track_id not in rows or track_id not in stored:
            return float("inf")
        return aligned_distance(windows, Windows.stored(*stored[track_id], rows[track_id].duration))[0]

    def pairs(self, track_ids: Sequence[int], others: dict[int, list[int]]) -> list[PairCheck]:
        """Each of ``track_ids`` against its nearest tracks and its ``others``, each pair once."""
        links = self.store.track_links()
        durations = {i: duration for i, duration, _ in links}
        leader = {i: lead or i for i, _, lead in links}
        seen, checks = set(), []
        for start in range(0, len(track_ids), BATCH):
            batch = [i for i in track_ids[start : start + BATCH] if i in durations]
            near = neighbours(self.index, self.store, self.transform, batch)
            wanted = {
                i: [
                    j
                    for j in dict.fromkeys([*near.get(i, []), *others.get(i, [])])
                    if j != i and j in durations and (min(i, j), max(i, j)) not in seen
                ]
                for i in batch
            }
            windows = _windows(
                store=self.store, ids={*wanted, *(j for js in wanted.values() for j in js)}, durations=durations
            )
            for i, js in wanted.items():
                for j in js:
                    if (min(i, j), max(i, j)) in seen or i not in windows or j not in windows:
                        continue
                    seen.add((min(i, j), max(i, j)))
                    fits = abs(durations[i] - durations[j]) <= DURATION_TOLERANCE_S
                    room = None if fits else DURATION_TOLERANCE_S  # as the fit measures them
                    distance = aligned_distance(windows[i], windows[j], most_shift_s=room)[0]
                    checks.append(
                        PairCheck(i, j, distance, fits and distance <= self.rule.distance, leader[i] == leader[j])
                    )
        return checks
