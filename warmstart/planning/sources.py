"""Several named sources: which source fills each target variable.

The source given as SOURCE is ``main``; the rules' ``sources:`` (or the ``sources=`` argument) name more,
and ``fill_from:`` says, first match wins, which target variables each one fills (a list of names: a fallback
order, the first source that has the variable). A target variable no ``fill_from`` rule matches comes from
``main``. Rename rules apply within the chosen source. Pure: the tables are read by the callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..tables import VariableTable
from .lookup import pattern_hint
from .patterns import compile_pattern
from .plan import MAIN_SOURCE
from .rule_checks import SOURCE_NAME

if TYPE_CHECKING:
    from .plain_rules import ParsedRules

__all__ = ["SourceChooser", "declared_sources"]


def declared_sources(rules: ParsedRules, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The named sources of a transfer: the rules' ``sources:`` (URLs), with ``given`` (URLs, tables or
    readers by name) added or replacing them. Raises :class:`UsageError` for the name ``main`` or a name
    that is not one."""
    found: dict[str, Any] = dict(rules.sources)
    for name, value in (given or {}).items():
        if name == MAIN_SOURCE:
            raise UsageError(f"{MAIN_SOURCE!r} names the source given as SOURCE; give this source another name")
        if not SOURCE_NAME.fullmatch(name):
            raise UsageError(f"source name {name!r}: letters, digits, '_', '.', '-', not starting with a digit")
        found[name] = value
    return found


class SourceChooser:
    """Applies the ``fill_from`` rules to target names and remembers which rules were used."""

    def __init__(self, rules: ParsedRules, names: Mapping[str, Any]):
        self.names = names  # every source by name, main included
        self.rules = [(p, compile_pattern(p), (n,) if isinstance(n, str) else tuple(n)) for p, n in rules.fill_from]
        self.used: set[int] = set()

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def choose(self, target: tuple[str, ...]) -> tuple[tuple[str, ...], int | None]:
        """(the source names to try, in order; the ``fill_from`` rule that chose them, None for ``main`` by default),
        for a target variable by its name and aliases."""
        for i, (_, rx, names) in enumerate(self.rules):
            if any(rx.fullmatch(key) for key in target):
                self.used.add(i)
                return names, i
        return (MAIN_SOURCE,), None

    def undeclared(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if n not in self.names]

    def describe(self, name: str, rule: int | None, tried: tuple[str, ...] = ()) -> str:
        """Where the value comes from, for a plan row's reason."""
        why = "no fill_from rule matches" if rule is None else f"fill_from[{rule}]"
        lacking = f"; not in {', '.join(repr(n) for n in tried)}" if tried else ""
        return f"source {name!r} ({why}{lacking})"

    def rule_errors(self, filled: Mapping[str, int], target: VariableTable) -> list[str]:
        """``fill_from`` rules applied to no target variable (a pattern matching none of ``target``'s names said
        with the closest) or naming undeclared sources; sources that fill nothing (``filled``: transferred
        variables by source name), when there are several."""
        errors = []
        declared = ", ".join(repr(n) for n in self.names)
        for i, (p, _, names) in enumerate(self.rules):
            for name in self.undeclared(names):
                errors.append(f"fill_from[{i}] {p!r} names source {name!r}, which is not declared (declared: {declared};"
                              " add it under sources:)")
            if i not in self.used:
                errors.append(f"fill_from[{i}] {p!r} is applied to no target variable (it matches none, or only names "
                              "an earlier fill_from rule, an exclude, no include or a null rename already took)"
                              + pattern_hint(p, target))
        if self.several:
            for name, table in self.names.items():
                if not filled.get(name):
                    hint = ("pass one of the named sources as SOURCE" if name == MAIN_SOURCE
                            else "check its fill_from rules, or remove it")
                    errors.append(f"source {name!r} ({getattr(table, 'origin', table)}) fills no target variable "
                                  f"({hint})")
        return errors
