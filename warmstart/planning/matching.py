"""Matching: a pure function of (source tables, target table, rules) that decides, for every target
variable, which source variable fills it and how (copy, cast, remap, init, skip, error), and why.
Planning reads no tensor data (vocabulary files of transforms only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..formats.dtypes import is_value_preserving_cast
from ..tables import Variable, VariableTable, named_by_structure
from .block_plan import Blocks, disjoint
from .lookup import Found, SourceIndex, closest_source, pattern_hint, same_structure
from .patterns import PatternSet, compile_pattern, compile_template
from .plan import MAIN_SOURCE, TRANSFERRED, Plan, PlanEntry
from .sources import SourceChooser
from .transforms import Remap, TransformMatcher, plan_block_transform, plan_remap

if TYPE_CHECKING:
    from .plain_rules import ParsedRules
    from .rules import Transform

__all__ = ["make_plan", "source_table_for"]


def source_table_for(source: VariableTable, rules: ParsedRules, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The source's table as the rules see it: named by the model of ``source_structure`` when given."""
    if rules.source_structure is None:
        return source
    return named_by_structure(source, rules.source_structure, storage_options)


def make_plan(source: VariableTable, target: VariableTable, rules: ParsedRules,
              storage_options: dict[str, Any] | None = None,
              sources: Mapping[str, VariableTable] | None = None) -> Plan:
    """Plan the transfer of ``source`` (named ``main``) and the named ``sources`` (the tables of the rules'
    ``sources:``, by name) into ``target`` under ``rules``. Pure but for reading the vocabulary files of
    transforms (with ``storage_options``); never raises for a bad match: problems become ``error`` entries
    and ``rule_errors``. Raises :class:`UsageError` when a source the rules declare has no table here."""
    tables = {MAIN_SOURCE: source, **(sources or {})}
    missing = [n for n in rules.sources if n not in tables]
    if missing:
        from ..errors import UsageError

        raise UsageError(f"the rules declare source {missing[0]!r}, but it was not read (several sources are for "
                         "transfers and plans from files: warmstart.plan/transfer, the CLI, the flow)")
    matcher = _Matcher(rules)
    transforms = TransformMatcher(rules)
    chooser = SourceChooser(rules, tables)
    indexes = {name: SourceIndex(table).claim(target) for name, table in tables.items()}
    entries = []
    for t in target.variables:
        found = transforms.find(t)
        entry = _plan_one(t, tables, indexes, rules, matcher, chooser, _named_source(found))
        chosen = tables[entry.from_source or MAIN_SOURCE]  # a transform's other sources are in the same one
        entries.append(_with_transform(entry, t, found, rules, chosen, storage_options))
    entries = _flag_shared_sources(entries, rules)
    filled = defaultdict(int)
    for e in entries:
        if e.action in TRANSFERRED:
            filled[e.from_source] += 1
    rule_errors = (matcher.unused_rule_errors(target) + transforms.unused_rule_errors(target)
                   + chooser.rule_errors(filled, target))
    total = sum(v.num_elements or 0 for v in target.variables)
    copied = sum(e.num_elements for e in entries if e.action in TRANSFERRED)
    coverage = copied / total if total else 1.0
    rule_errors += _coverage_errors(rules, coverage, entries, target, failed=bool(rule_errors))
    matched = {name for e in entries if e.from_source == MAIN_SOURCE for name in e.sources}
    unused = tuple(n for n in source if n not in matched)
    return Plan(source, target, rules, tuple(entries), unused, tuple(rule_errors), coverage, sources=tables,
                hint=_structure_hint(rules, entries, source, target))


def _coverage_errors(rules: ParsedRules, coverage: float, entries: list[PlanEntry], target: VariableTable,
                     failed: bool) -> list[str]:
    """Too little copied: below ``min_coverage``; or nothing at all, unless the rules allow it (``min_coverage``
    written, 0 included): a transfer that copies nothing is no warm start (said when nothing else is)."""
    if rules.min_coverage is not None:
        return ([f"coverage {coverage:.1%} is below min_coverage {rules.min_coverage:.1%}"]
                if coverage < rules.min_coverage else [])
    if failed or any(e.action == "error" for e in entries):
        return []
    if target.variables and not any(e.action in TRANSFERRED for e in entries):
        return [f"no variable would be copied: none of the target's {len(entries)} variables takes a source value "
                "(min_coverage: 0 in the rules allows a transfer that copies nothing)"]
    return []


def _structure_hint(rules: ParsedRules, entries: list[PlanEntry], source: VariableTable, target: VariableTable) -> str | None:
    """When names failed but the two models have the same structure: say so, and which rule copies by it."""
    if rules.match != "names" or not any(e.action == "error" and e.source is None for e in entries):
        return None
    count = same_structure(source, target)
    if not count:
        return None
    return (f"the source and the target have the same structure ({count} Keras variables: the same layer classes "
            "in the same order, the same shapes) but other layer names: the rule 'match: structure' copies them "
            "by structure, as Keras' load_weights does (each match flagged positional)")


class _Matcher:
    """Applies include/exclude/rename to target names and remembers which rules were used."""

    def __init__(self, rules: ParsedRules):
        self.rules = rules
        self.include = [(p, compile_pattern(p)) for p in rules.include]
        self.exclude = [(p, compile_pattern(p)) for p in rules.exclude]
        self.rename = [(p, compile_pattern(p), t) for p, t in rules.rename]
        # each list matched in one pass over a name, however long it is (linear time: RE2)
        self._include, self._exclude, self._rename = (
            PatternSet([rx for _, rx, *_ in rules_]) for rules_ in (self.include, self.exclude, self.rename))
        self.used: set[tuple[str, int]] = set()

    def excluded_by(self, t: Variable) -> str | None:
        """Why ``t`` is excluded (the pattern, and the other name of ``t`` it matched when not its name), or None.
        Patterns match ``t`` by its own names, not by where TF stored it: a model's weight TF filed under the
        optimizer is no optimizer state."""
        i = _first(self._exclude, t, t.own_names)
        if i is None:
            return None
        self.used.add(("exclude", i))
        pattern, rx = self.exclude[i]
        key = _matching_key(rx, t, t.own_names)
        return repr(pattern) if key == t.name else f"{pattern!r} (through its other name {key})"

    def included(self, t: Variable) -> bool:
        hits = {i for key in (t.name, *t.aliases) for i in self._include.matches(key)}
        self.used.update(("include", i) for i in hits)
        return bool(hits)

    def source_name(self, t: Variable) -> tuple[str | None, int | None]:
        """(source name or None, index of the rename rule used or None): the first rule matching the target's
        name or one of its aliases (a rule written against object paths, or a file's vars/N)."""
        i = _first(self._rename, t)
        if i is None:
            return t.name, None
        self.used.add(("rename", i))
        pattern, rx, template = self.rename[i]
        key = _matching_key(rx, t)
        return (None if template is None else compile_template(template, pattern).expand(rx.fullmatch(key))), i

    def unused_rule_errors(self, target: VariableTable) -> list[str]:
        errors = []
        for i, (p, _) in enumerate(self.include):
            if ("include", i) not in self.used:
                errors.append(f"include[{i}] {p!r} matches no target variable{pattern_hint(p, target)}")
        user_excludes = set(self.rules.user_excludes())
        for i, (p, _) in enumerate(self.exclude):
            if p in user_excludes and ("exclude", i) not in self.used:
                errors.append(f"exclude[{i}] {p!r} matches no target variable{pattern_hint(p, target)}")
        for i, (p, _, t) in enumerate(self.rename):
            if ("rename", i) not in self.used:
                errors.append(
                    f"rename[{i}] {p!r} -> {t!r} is applied to no target variable "
                    f"(it matches none, or only names an earlier rule or an exclude already took){pattern_hint(p, target)}"
                )
        return errors


def _first(patterns: PatternSet, t: Variable, keys: tuple[str, ...] | None = None) -> int | None:
    """The first of ``patterns`` that matches the target's name or one of its aliases (or ``keys``) whole."""
    hits = [i for key in (keys or (t.name, *t.aliases)) if (i := patterns.first(key)) is not None]
    return min(hits) if hits else None


def _matching_key(rx: Any, t: Variable, keys: tuple[str, ...] | None = None) -> str | None:
    """The first of the target's name and aliases (or ``keys``) that ``rx`` matches whole; None if none does."""
    return next((key for key in (keys or (t.name, *t.aliases)) if rx.fullmatch(key)), None)


def _named_source(found) -> tuple[int, str] | None:
    """(transform index, source name) when the target's transform names its source (``from``, ``concat``)."""
    if isinstance(found, str) or found[1] is None:
        return None
    names = found[1].source_names(found[2])
    return (found[0], names[0]) if names else None


def _plan_one(t: Variable, tables: Mapping[str, VariableTable], indexes: Mapping[str, SourceIndex], rules: ParsedRules,
              matcher: _Matcher, chooser: SourceChooser, named: tuple[int, str] | None = None) -> PlanEntry:
    """The entry of one target variable, from the source ``fill_from`` chooses among ``tables`` (by name)."""
    base = dict(target=t.name, shape=t.shape, dtype=t.dtype, target_key=t.key)
    pattern = matcher.excluded_by(t)
    if pattern is not None:
        return PlanEntry(source=None, action="init", reason=f"excluded by {pattern}", **base)
    if not matcher.included(t):
        return PlanEntry(source=None, action="init", reason="matched by no include pattern", **base)
    if named is not None:  # the transform names the source: the rename rules are not asked
        renamed, rule, via = named[1], None, f" (named by transforms[{named[0]}])"
    else:
        renamed, rule = matcher.source_name(t)
        via = "" if rule is None else f" (via rename[{rule}])"
    if renamed is None:
        return PlanEntry(source=None, action="init", reason=f"rename[{rule}] maps it to null", **base)
    names, from_rule = chooser.choose((t.name, *t.aliases))
    undeclared = chooser.undeclared(names)
    if undeclared:
        return PlanEntry(source=None, action="error", reason=f"fill_from[{from_rule}] names source {undeclared[0]!r}, "
                         "which is not declared (add it under sources:)", **base)
    for i, name in enumerate(names):  # a fallback order: the first source that has it
        found = _lookup(t, tables[name], indexes[name], renamed, _explicit(rule, named), rules)
        if found is not None:
            entry = _matched(t, found, rules, base)
            if chooser.several:
                entry = replace(entry, reason=f"{entry.reason}; {chooser.describe(name, from_rule, names[:i])}")
            return replace(entry, from_source=name)
    where = "the source" if not chooser.several else chooser.describe(names[0], from_rule)
    if len(names) > 1:
        where = f"sources {', '.join(repr(n) for n in names)} (fill_from[{from_rule}])"
    if named is not None:  # never on_missing: init, a name written in a transform is a typo
        return PlanEntry(source=None, action="error", reason=f"transforms[{named[0]}]: {renamed!r} is not in "
                         f"{where}", **base)
    return _missing(t, renamed, via, tables[names[0]], rules, base, where)


def _explicit(rule: int | None, named: tuple[int, str] | None) -> str | None:
    """How the rules name the target's source, if they do (then the match is the user's, never positional)."""
    if named is not None:
        return f"named by transforms[{named[0]}]"
    return None if rule is None else f"renamed by rename[{rule}]"


def _lookup(t: Variable, source: VariableTable, index: SourceIndex, renamed: str, explicit: str | None,
            rules: ParsedRules) -> Found | None:
    """The source variable of ``t``: the one a rule names (by its name or an alias: a TF2 object path under
    ``source_structure``, a file's vars/N), else what :class:`SourceIndex` finds."""
    if explicit is not None:
        s = source.find(renamed)
        return None if s is None else Found(s, explicit, False)
    return index.find(t, rules.match)


def _matched(t: Variable, found: Found, rules: ParsedRules, base: dict[str, Any]) -> PlanEntry:
    """The entry of a target variable whose source variable was found: copy, cast, skip or error."""
    s = found.variable
    how = found.how
    via = "" if how == "same name" else f" ({how})"
    fields = dict(source=s.name, source_shape=s.shape, source_dtype=s.dtype, source_key=s.key,
                  positional=found.positional)
    if not _shapes_compatible(s.shape, t.shape):
        action = "skip" if rules.on_shape_mismatch == "skip" else "error"
        reason = f"shape {list(s.shape)} in the source{via}, {list(t.shape)} in the target"
        if action == "error":
            reason += " (on_shape_mismatch: skip keeps the initial value)"
        return PlanEntry(action=action, reason=reason, **fields, **base)
    if s.dtype == t.dtype:
        return PlanEntry(action="copy", reason=how, num_elements=s.num_elements or 0, **fields, **base)
    return _dtype_mismatch(t, s, via, rules, fields, base)


def _with_transform(e: PlanEntry, t: Variable, found, rules: ParsedRules, source: VariableTable,
                    storage_options) -> PlanEntry:
    """``e`` turned into a ``remap`` when a transform (``found`` by :class:`TransformMatcher`) names its target
    and it has a source; a transform that cannot be made (shape, vocabulary, ops) is an ``error`` naming why.
    An excluded or missing target keeps its entry (the transform counts as used)."""
    if isinstance(found, str) and (e.source is not None or e.action == "error"):  # ambiguous: said first
        return replace(e, action="error", reason=found, num_elements=0)
    if e.source is None or isinstance(found, str):
        return e
    index, transform, key = found
    if transform is None:
        return e
    assert e.source_shape is not None
    remap = _transformed(transform, e, t, source, storage_options, key)
    where = f"transforms[{index}]"
    if isinstance(remap, str):
        return replace(e, action="error", reason=f"{where}: {remap}", num_elements=0)
    if e.source_dtype != e.dtype and not _castable(e, rules):
        return replace(e, action="error", num_elements=0, reason=f"{where}: dtype {e.source_dtype} in the source, "
                       f"{e.dtype} in the target (on_dtype_mismatch: cast, allow_lossy_cast if it loses values)")
    cast = "" if e.source_dtype == e.dtype else f"; cast {e.source_dtype} -> {e.dtype}"
    return replace(e, action="remap", remap=remap, num_elements=_copied_elements(remap, t.shape),
                   reason=f"{remap.summary['reason']}{cast} ({where})")


def _transformed(transform: Transform, e: PlanEntry, t: Variable, source: VariableTable,
                 storage_options, key: str) -> Remap | Blocks | str:
    if transform.blocks:
        return plan_block_transform(transform, source[e.source], t, source, key)  # type: ignore[index]
    return plan_remap(transform, e.source_shape, t.shape, storage_options, t.dtype)  # type: ignore[arg-type]


def _castable(e: PlanEntry, rules: ParsedRules) -> bool:
    return (rules.on_dtype_mismatch == "cast" and "string" not in (e.source_dtype, e.dtype)
            and (rules.allow_lossy_cast or is_value_preserving_cast(e.source_dtype, e.dtype)))  # type: ignore[arg-type]


def _copied_elements(remap: Remap | Blocks, shape) -> int:
    import numpy as np

    n = 1
    if isinstance(remap, Blocks):  # every element from the sources
        return int(np.prod(remap.shape, dtype=np.int64))
    for d, size in enumerate(shape):
        n *= int((remap.index(d, size) >= 0).sum())
    return n


def _missing(t, source_name, via, source, rules, base, where: str = "the source") -> PlanEntry:
    if rules.on_missing == "init":
        return PlanEntry(source=None, action="init", reason=f"{source_name!r} is not in {where}{via}", **base)
    close = closest_source(source_name, t, source)
    hint = f"; closest source name: {close!r}" if close else ""
    return PlanEntry(
        source=None, action="error",
        reason=f"{source_name!r} is not in {where}{via}{hint} (add a rename rule, or on_missing: init)",
        **base,
    )


def _dtype_mismatch(t: Variable, s: Variable, via: str, rules: ParsedRules, found, base) -> PlanEntry:
    pair = f"dtype {s.dtype} in the source{via}, {t.dtype} in the target"
    if rules.on_dtype_mismatch == "skip":
        return PlanEntry(action="skip", reason=pair, **found, **base)
    if rules.on_dtype_mismatch == "error":
        return PlanEntry(action="error", reason=f"{pair} (on_dtype_mismatch: cast or skip)", **found, **base)
    castable = "string" not in (s.dtype, t.dtype) and s.dtype not in ("variant", "resource")
    if not castable:
        return PlanEntry(action="error", reason=f"{pair}: no cast exists between them", **found, **base)
    exact = is_value_preserving_cast(s.dtype, t.dtype)
    if not exact and not rules.allow_lossy_cast:
        return PlanEntry(action="error", reason=f"{pair}: the cast loses values (allow_lossy_cast: true to accept)",
                         **found, **base)
    kind = "value-preserving" if exact else "lossy (allowed)"
    return PlanEntry(action="cast", reason=f"{pair}: {kind} cast", num_elements=s.num_elements or 0,
                     **found, **base)


def _shapes_compatible(source: tuple[int, ...], target: tuple[int | None, ...]) -> bool:
    if len(source) != len(target):
        return False
    return all(t is None or s == t for s, t in zip(source, target))


def _flag_shared_sources(entries: list[PlanEntry], rules: ParsedRules) -> list[PlanEntry]:
    """Two targets filled from one source variable are an error (an ambiguous rename?) unless
    ``allow_shared_source``; block transforms reading disjoint slices of one source are not a share (a fused
    kernel split into two), and their reasons say so."""
    if rules.allow_shared_source:
        return entries
    users: dict[tuple[str | None, str], list[PlanEntry]] = defaultdict(list)  # by source and variable
    for e in entries:
        if e.action in TRANSFERRED:
            for name in e.sources:
                users[(e.from_source, name)].append(e)
    out = []
    for e in entries:
        others = ([o for name in e.sources for o in users[(e.from_source, name)] if o is not e]
                  if e.action in TRANSFERRED else [])
        shared = [o.target for o in others if not _disjoint_slices(e, o)]
        if shared:
            reason = (f"source {e.source!r} also fills {shared[0]!r}"
                      + (f" and {len(shared) - 1} more" if len(shared) > 1 else "")
                      + " (an ambiguous rename? allow_shared_source: true if intended)")
            e = replace(e, action="error", reason=reason, num_elements=0)
        elif others:
            names = ", ".join(repr(o.target) for o in others)
            e = replace(e, reason=f"{e.reason}; {names} takes another, disjoint slice of {e.source!r} "
                        "(not a shared source)")
        out.append(e)
    return out


def _disjoint_slices(a: PlanEntry, b: PlanEntry) -> bool:
    """Both are block transforms of one single source reading disjoint regions of it."""
    return (isinstance(a.remap, Blocks) and isinstance(b.remap, Blocks) and len(a.sources) == len(b.sources) == 1
            and a.source == b.source and disjoint(a.remap, b.remap))
