"""The checks every rules document passes, whichever way it is read (:mod:`.rules`' models, or
:mod:`.plain_rules` for the documents that need no model): its size, its patterns, its templates, its
source names. Each raises ``ValueError`` in words naming what is wrong; no pydantic here.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputLimitError
from ..storage import RULES_ENTRIES, check_nesting
from .patterns import compile_pattern, compile_template
from .plan import MAIN_SOURCE

__all__ = ["DEFAULT_EXCLUDE", "SOURCE_NAME", "check_size", "check_patterns", "check_template", "rename_pairs",
           "check_source_names", "check_fill_from"]

SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# The lists whose length planning's cost grows with (each entry a pattern, a rule or a source).
_COUNTED = ("include", "exclude", "rename", "transforms", "fill_from", "sources")

# Bookkeeping that a warm start should not carry over: counters and optimizer state
# (TF1 slot names, Keras 3 optimizer variables, TF2 slot paths).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "global_step",
    "save_counter",
    r".*/(Adam|Adagrad|Momentum|RMSProp|Ftrl|Adadelta)(_\d+)?",
    r".*/(adam_m|adam_v)",
    r"(.*/)?optimizer/.*",
    r".*/\.OPTIMIZER_SLOT/.*",
)


def check_size(doc: dict[str, Any]) -> None:
    """Bound what planning costs before any regex is compiled: the nesting, and the number of entries."""
    try:
        check_nesting(doc, "the rules")
    except InputLimitError as exc:
        raise ValueError(str(exc)) from None
    entries = sum(len(doc[key]) for key in _COUNTED if isinstance(doc.get(key), (list, dict)))
    verify = doc.get("verify")
    if isinstance(verify, dict):
        entries += sum(len(value) for value in verify.values() if isinstance(value, list))
    if entries > RULES_ENTRIES.value:
        raise ValueError(f"{entries:,} entries (include, exclude, rename, transforms, fill_from, sources, verify's "
                         "lists), over the "
                         f"limit of {RULES_ENTRIES.words('entries')}: raise it if these rules are right")


def check_patterns(patterns: list[str]) -> list[str]:
    """Every pattern compiles (RE2, a whole name)."""
    for pattern in patterns:
        compile_pattern(pattern)  # raises ValueError naming the pattern and what RE2 refuses
    return patterns


def check_template(pattern: str, template: str) -> None:
    """Raises ``re.error`` unless ``template`` is a valid template for ``pattern`` (its escapes and group
    references checked by Python's own template parser, as the rule will be applied)."""
    compile_template(template, pattern)


def rename_pairs(rules: list[str] | list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """The rename rules as (pattern, template or None) pairs, every one checked."""
    pairs = [_rename_pair(rule) if isinstance(rule, str) else rule for rule in rules]
    for pattern, template in pairs:
        compile_pattern(pattern)
        if template is not None:
            try:
                check_template(pattern, template)
            except re.error as exc:
                raise ValueError(f"rename template {template!r} for {pattern!r}: {exc}") from None
    return pairs


def _rename_pair(rule: str) -> tuple[str, str | None]:
    """``'model/(.*) -> bert/\\1'`` as a pair; nothing after the arrow keeps the initial value (None)."""
    if rule.count("->") != 1:
        raise ValueError(f"rename rule {rule!r}: expected 'target regex -> source name template' "
                         "(one arrow; nothing after it keeps the initial value)")
    pattern, _, template = (part.strip() for part in rule.partition("->"))
    if not pattern:
        raise ValueError(f"rename rule {rule!r}: no target regex before the arrow")
    return pattern, template or None


def check_source_names(sources: dict[str, str]) -> dict[str, str]:
    for name in sources:
        if name == MAIN_SOURCE:
            raise ValueError(f"{MAIN_SOURCE!r} names the source given as SOURCE; choose another name")
        if not SOURCE_NAME.fullmatch(name):
            raise ValueError(f"source name {name!r}: letters, digits, '_', '.', '-', not starting with a digit")
    return sources


def check_fill_from(pairs: list[tuple[str, str | list[str]]]) -> list[tuple[str, str | list[str]]]:
    for pattern, names in pairs:
        compile_pattern(pattern)
        if isinstance(names, list) and (not names or len(set(names)) != len(names)):
            raise ValueError(f"fill_from {pattern!r}: a fallback order names each source once, at least one")
    return pairs
