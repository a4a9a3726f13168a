"""Signature files (``*.json``, written by ``warmstart signature``): a target's variable table as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import CorruptCheckpointError
from ..storage import read_bytes, resolve
from .table import NAME_FIELDS, Variable, VariableTable

__all__ = ["read_signature_file"]


def read_signature_file(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """Read a signature document written by ``warmstart signature``."""
    loc = resolve(url, storage_options)
    try:
        doc = json.loads(read_bytes(loc))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"{loc.url}: not a JSON signature file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != "warmstart.signature":
        raise CorruptCheckpointError(
            f"{loc.url}: not a warmstart signature (expected \"format\": \"warmstart.signature\"; "
            "write one with `warmstart signature TARGET -o FILE`)"
        )
    try:
        variables = [
            Variable(
                name=str(v["name"]),
                shape=tuple(None if d is None else int(d) for d in v["shape"]),
                dtype=str(v["dtype"]),
                key=str(v.get("key", v["name"])),
                **{field: _optional(v, field) for field in NAME_FIELDS},
                guessed=tuple(str(g) for g in v.get("guessed", ())),
                generated=bool(v.get("generated", False)),
                positional=bool(v.get("positional", False)),
            )
            for v in doc["variables"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{loc.url}: malformed variable entry in signature: {exc!r}") from None
    from ..formats.dtypes import by_name

    for v in variables:
        try:
            by_name(v.dtype)
        except KeyError:
            raise CorruptCheckpointError(f"{loc.url}: variable {v.name!r} has unknown dtype {v.dtype!r}") from None
        if any(d is not None and d < 0 for d in v.shape):
            raise CorruptCheckpointError(f"{loc.url}: variable {v.name!r} has a negative dimension {list(v.shape)}")
    described = doc.get("kind")
    return VariableTable.of(variables, loc.url, "signature", None if described is None else str(described))


def _optional(doc: dict[str, Any], key: str) -> str | None:
    return None if doc.get(key) is None else str(doc[key])
