"""Remapped rows: a vocabulary remap (or an overlap copy) of the plan, or a lookup declared under ``verify:``,
compared row by row: every target row that has a source row (a surviving token's) must equal that row of the
source (after the plan's cast); rows without one (new tokens, OOV buckets, grown regions) are reported as new,
never compared. Values are read from the output's file and the source's by warmstart's readers (a lookup of a
token in an Embedding is its row). NumPy and the readers only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..planning import Plan, PlanEntry
from ..planning.parity import Lookup
from ..planning.patterns import compile_pattern
from ..planning.rules import Transform, VocabRemap
from ..planning.transforms import Remap, plan_remap
from .certificate import Check, NotChecked
from .compare import LAYER_FACTOR, difference, magnitude, tolerance

__all__ = ["row_checks"]


def row_checks(plan: Plan, lookups: Iterable[Lookup], target_value: Callable[[PlanEntry], np.ndarray | str],
               source_value: Callable[[PlanEntry], np.ndarray], storage_options: dict[str, Any] | None = None
               ) -> tuple[list[Check], list[NotChecked]]:
    """The rows checks of ``plan``'s remapped entries and the declared ``lookups`` (``target_value``: an entry's
    value in the output, or why it cannot be read; ``source_value``: its source's value)."""
    checks, skipped = [], []
    for entry, remap, declared in _remapped(plan, list(lookups), storage_options):
        if isinstance(remap, str):
            skipped.append(NotChecked(entry.target, f"{declared}: {remap}", "rows", variables=(entry.target,)))
            continue
        target = target_value(entry)
        if isinstance(target, str):
            skipped.append(NotChecked(entry.target, target, "rows", variables=(entry.target,)))
            continue
        checks.append(_compare(entry, remap, np.asarray(source_value(entry)), np.asarray(target), declared))
    return checks, skipped


def _remapped(plan: Plan, lookups: list[Lookup], storage_options) -> Iterable[tuple[PlanEntry, Remap | str, str]]:
    """(entry, its index maps or why there are none, what declared them) for every entry to compare by rows."""
    patterns = [(i, compile_pattern(lookup.target), lookup) for i, lookup in enumerate(lookups)]
    for entry in plan.entries:
        if isinstance(entry.remap, Remap):
            yield entry, entry.remap, f"the plan's {entry.remap.kind} remap"
            continue
        hit = next(((i, lookup) for i, rx, lookup in patterns if rx.fullmatch(entry.target)), None)
        if hit is None:
            continue
        i, lookup = hit
        where = f"verify.lookups[{i}]"
        if entry.source is None or entry.source_shape is None:
            yield entry, (f"the target has no source variable to compare rows with ({entry.action}: "
                          f"{entry.reason})"), where
            continue
        transform = Transform(target=lookup.target, vocab=VocabRemap(old=lookup.old, new=lookup.new, axis=lookup.axis))
        yield entry, plan_remap(transform, entry.source_shape, entry.shape, storage_options, entry.dtype), where


def _compare(entry: PlanEntry, remap: Remap, source: np.ndarray, target: np.ndarray, declared: str) -> Check:
    """Target rows that have a source row against those source rows (every axis a map selects on)."""
    if tuple(target.shape) != tuple(entry.shape):
        return _failed(entry, f"the output holds {list(target.shape)}, the plan says {list(entry.shape)}", declared)
    target_index, source_index, new = [], [], 0
    for dim, size in enumerate(target.shape):
        index = remap.index(dim, size)
        kept = np.flatnonzero(index >= 0)
        target_index.append(kept)
        source_index.append(index[kept])
        new += int(size - kept.size) if dim == remap.axis else 0
    got = target[np.ix_(*target_index)]
    want = source[np.ix_(*source_index)].astype(target.dtype)
    cast = entry.source_dtype is not None and entry.source_dtype != entry.dtype
    atol, rtol = tolerance([entry.dtype, entry.source_dtype or entry.dtype], magnitude([want]), LAYER_FACTOR) if cast \
        else (0.0, 0.0)
    diff = difference([want], [got], atol, rtol)
    kept = len(target_index[remap.axis])
    note = (f"{kept} rows with a source row compared ({declared}); {new} new rows not compared"
            if remap.kind == "vocab" else f"the region both shapes share compared ({declared})")
    cause = None
    if not diff.within:
        bad = _differing(got, want, remap.axis)
        cause = (f"vocabulary rows: {bad} of {kept} rows are not their token's source row "
                 f"(e.g. target row {int(target_index[remap.axis][_first(got, want, remap.axis)])})"
                 if remap.kind == "vocab" else f"{bad} of {kept} slices differ from the source's")
    return Check("rows", entry.target, entry.source or "", diff.within, diff.max_abs, diff.max_rel, atol, rtol,
                 diff.compared, cause=cause or diff.cause, note=note, variables=(entry.target,))


def _failed(entry: PlanEntry, cause: str, declared: str) -> Check:
    return Check("rows", entry.target, entry.source or "", False, float("inf"), float("inf"), 0.0, 0.0, 0,
                 cause=cause, note=declared, variables=(entry.target,))


def _row_equal(got: np.ndarray, want: np.ndarray, axis: int) -> np.ndarray:
    other = tuple(i for i in range(got.ndim) if i != axis)
    same = np.isclose(got.astype(np.float64), want.astype(np.float64), rtol=0, atol=0, equal_nan=True)
    return same.all(axis=other) if other else same


def _differing(got: np.ndarray, want: np.ndarray, axis: int) -> int:
    return int((~_row_equal(got, want, axis)).sum())


def _first(got: np.ndarray, want: np.ndarray, axis: int) -> int:
    return int(np.flatnonzero(~_row_equal(got, want, axis))[0]) if _differing(got, want, axis) else 0
