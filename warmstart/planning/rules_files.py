"""Rules as given (a YAML/JSON file at any URL, a dict, a model, nothing) read once into the rules a plan
uses: :class:`~warmstart.planning.plain_rules.PlainRules` for a document of plain fields, else the
:class:`~warmstart.planning.rules.Rules` model. Rules are untrusted: a file is read within a size limit, its
nesting and entry count are bounded, and a ``py:`` builder in it runs only when the caller allowed code
(:mod:`warmstart.tables.code_policy`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputLimitError, UsageError
from ..storage import RULES_BYTES, read_bytes, resolve
from .plain_rules import ParsedRules, PlainRules, plain_rules

if TYPE_CHECKING:
    import yaml

    from .rules import Rules

__all__ = ["load_rules"]


def load_rules(rules: ParsedRules | dict[str, Any] | str | Path | None,
               storage_options: dict[str, Any] | None = None) -> ParsedRules:
    """The rules of a model, a dict, or a YAML/JSON file path or URL (None: the default, strict rules).

    Raises :class:`UsageError` when the rules are invalid, naming every problem.
    """
    origin = "rules"
    if rules is None:
        rules = {}
    elif isinstance(rules, (str, Path)):
        origin = str(rules)
        rules = _parse_rules_file(origin, storage_options)
    if isinstance(rules, dict):
        rules = plain_rules(rules) or _model(rules, origin)
    elif not isinstance(rules, PlainRules) and not _is_model(rules):
        raise UsageError(f"{origin}: rules must be a mapping of fields, received: {type(rules).__name__}")
    _refuse_code(rules, origin)
    return rules


def _is_model(value: Any) -> bool:
    from .rules import Rules

    return isinstance(value, Rules)


def _model(doc: dict[str, Any], origin: str) -> Rules:
    from .rules import validate_rules

    return validate_rules(doc, origin)


def _refuse_code(rules: ParsedRules, origin: str) -> None:
    from ..tables import refuse_code_in_rules

    for field_name, value in rules.code_fields():
        refuse_code_in_rules(value, origin, field_name)


def _parse_rules_file(origin: str, storage_options: dict[str, Any] | None) -> Any:
    """The document in the rules file at ``origin``: read within its size limit, parsed, its nesting bounded."""
    try:
        data = read_bytes(resolve(origin, storage_options), RULES_BYTES)
    except InputLimitError as exc:
        raise UsageError(f"rules: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{origin}: not a text file ({exc.reason} at byte {exc.start})") from None
    document = _json_document(text)
    if document is not None:
        return document
    import yaml  # ~10 ms of a cold process: only for the rules files that need it

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML/JSON: {_yaml_problem(exc)}") from None
    except RecursionError:  # the pure-Python parser recurses per level (never the C one: it crashes)
        raise UsageError(f"{origin}: nested too deeply to be rules") from None


def _json_document(text: str) -> dict[str, Any] | None:
    """A rules file that is a JSON object, parsed by the JSON parser (what YAML would read from it too); None for
    anything else (YAML, JSON with NaN or Infinity, broken JSON), which the YAML parser then reads or explains."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the YAML parser found and where (its own message spans several lines)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem
