"""Rules read without pydantic: :class:`PlainRules`, what a rules document that holds only plain fields gives.

Most rules documents say which names to take (``include``, ``exclude``, ``rename``, ``fill_from``, ``sources``)
and how strict to be (``on_*``, ``allow_*``, ``min_coverage``, ``match``), each value of the one type the
:class:`~warmstart.planning.rules.Rules` model keeps as it is. Such a document is read here, through the same
checks (:mod:`.rule_checks`), into a record with the model's fields, values and ``model_dump``: the plan, its
digest and every output are the same, and a command spares itself importing pydantic and building its
validator (~70 ms of a process here). Anything else (``transforms``, ``verify``, a value the model would coerce
or refuse, an unknown key) is left to the model (:func:`plain_rules` returns None): it is the one that reads or
refuses it, with its messages.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeAlias

from .rule_checks import (DEFAULT_EXCLUDE, check_fill_from, check_patterns, check_size, check_source_names,
                          rename_pairs)

if TYPE_CHECKING:
    from .rules import Rules

__all__ = ["PlainRules", "ParsedRules", "plain_rules"]


@dataclass(frozen=True, eq=False)
class PlainRules:
    """Rules with the fields, defaults and dump of :class:`~warmstart.planning.rules.Rules` (in its order), no
    ``transforms`` and no ``verify``. Equal to a ``Rules`` (or another ``PlainRules``) with the same dump."""

    include: list[str] = field(default_factory=lambda: [".*"])
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    rename: list[tuple[str, str | None]] = field(default_factory=list)
    on_missing: str = "error"
    on_shape_mismatch: str = "error"
    on_dtype_mismatch: str = "error"
    allow_lossy_cast: bool = False
    allow_shared_source: bool = False
    source_structure: str | None = None
    transforms: list[Any] = field(default_factory=list)
    min_coverage: float | None = None
    match: str = "names"
    sources: dict[str, str] = field(default_factory=dict)
    fill_from: list[tuple[str, str | list[str]]] = field(default_factory=list)
    verify: None = None

    __hash__ = None  # type: ignore[assignment]  # as the model's: its values are lists

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """The fields as ``Rules.model_dump(mode=mode)`` gives them (``"json"``: pairs as lists)."""
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.loads(json.dumps(doc)) if mode == "json" else copy.deepcopy(doc)

    def model(self) -> Rules:
        """The same rules as a :class:`~warmstart.planning.rules.Rules` model."""
        from .rules import Rules

        return Rules.model_validate(self.model_dump(mode="json"))

    def code_fields(self) -> list[tuple[str, str | None]]:
        """(field, value) of every field that may name a ``py:`` builder (data: it runs only if code is allowed)."""
        return [("source_structure", self.source_structure)]

    def user_excludes(self) -> list[str]:
        """Exclude patterns the user wrote (the defaults may match nothing without complaint)."""
        return [p for p in self.exclude if p not in DEFAULT_EXCLUDE]

    def __eq__(self, other: object) -> bool:
        dump = getattr(other, "model_dump", None)
        if dump is None or not hasattr(other, "on_missing"):
            return NotImplemented
        return self.model_dump(mode="json") == dump(mode="json")



#: What reading rules gives (:func:`~warmstart.planning.rules_files.load_rules`), and what planning takes.
ParsedRules: TypeAlias = "Rules | PlainRules"

def plain_rules(doc: Any) -> PlainRules | None:
    """The :class:`PlainRules` of the rules document ``doc``, or None when the model must read it: a key or a
    value outside the plain subset, or a check that fails (the model then says what is wrong)."""
    if type(doc) is not dict or not all(type(key) is str and key in _READERS for key in doc):
        return None
    try:
        check_size(doc)  # first, as the model does: nothing is read from a document over the bounds
    except ValueError:
        return None
    values = {}
    for key, value in doc.items():
        read = _READERS[key](value)
        if read is _NOT_PLAIN:
            return None
        values[key] = read
    try:
        for key, check in _CHECKS.items():
            if key in values:
                values[key] = check(values[key])
    except ValueError:
        return None
    return PlainRules(**values)


_NOT_PLAIN = object()


def _strings(value: Any) -> Any:
    return list(value) if type(value) is list and all(type(v) is str for v in value) else _NOT_PLAIN


def _include(value: Any) -> Any:
    return _strings(value) if type(value) is list and value else _NOT_PLAIN


def _one_of(*allowed: str) -> Callable[[Any], Any]:
    return lambda value: value if type(value) is str and value in allowed else _NOT_PLAIN


def _flag(value: Any) -> Any:
    return value if type(value) is bool else _NOT_PLAIN


def _optional_text(value: Any) -> Any:
    return value if value is None or type(value) is str else _NOT_PLAIN


def _fraction(value: Any) -> Any:
    if value is None:
        return None
    if type(value) not in (int, float) or math.isnan(value) or not 0 <= value <= 1:
        return _NOT_PLAIN
    return float(value)


def _pair(value: Any, second: Callable[[Any], bool]) -> tuple[str, Any] | None:
    if type(value) in (list, tuple) and len(value) == 2 and type(value[0]) is str and second(value[1]):
        return value[0], list(value[1]) if type(value[1]) in (list, tuple) else value[1]
    return None


def _rename(value: Any) -> Any:
    if type(value) is not list:
        return _NOT_PLAIN
    if all(type(v) is str for v in value):
        return list(value)
    pairs = [_pair(v, lambda t: t is None or type(t) is str) for v in value]
    return _NOT_PLAIN if None in pairs else pairs


def _names(value: Any) -> bool:
    return type(value) is str or (type(value) is list and all(type(n) is str for n in value))


def _fill_from(value: Any) -> Any:
    if type(value) is not list:
        return _NOT_PLAIN
    pairs = [_pair(v, _names) for v in value]
    return _NOT_PLAIN if None in pairs else pairs


def _sources(value: Any) -> Any:
    if type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items()):
        return dict(value)
    return _NOT_PLAIN


def _nothing(empty: Any) -> Callable[[Any], Any]:
    return lambda value: copy.copy(empty) if value == empty and type(value) is type(empty) else _NOT_PLAIN


#: How each plain field is read: its value as the model keeps it, or ``_NOT_PLAIN``.
_READERS: dict[str, Callable[[Any], Any]] = {
    "include": _include, "exclude": _strings, "rename": _rename,
    "on_missing": _one_of("error", "init"), "on_shape_mismatch": _one_of("error", "skip"),
    "on_dtype_mismatch": _one_of("error", "skip", "cast"), "allow_lossy_cast": _flag, "allow_shared_source": _flag,
    "source_structure": _optional_text, "transforms": _nothing([]), "min_coverage": _fraction,
    "match": _one_of("names", "structure"), "sources": _sources, "fill_from": _fill_from, "verify": _nothing(None),
}
#: The model's own checks of those fields (:mod:`.rule_checks`), in its order.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "include": check_patterns, "exclude": check_patterns, "rename": rename_pairs, "sources": check_source_names,
    "fill_from": check_fill_from,
}
