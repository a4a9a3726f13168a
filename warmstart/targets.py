"""``signature_of``: the variable table of any target kind.

URL targets are told apart by their form: ``py:module:function`` builders, ``*.meta`` MetaGraphs,
``*.keras`` Keras files, ``*.json`` signature files; anything else is a template checkpoint.
Live objects (a ``tf.Graph``, ``Session``, Keras model, ``tf.Module``) are accepted too.
TensorFlow is imported only for targets that need it.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CorruptCheckpointError, UsageError
from .storage import read_bytes, resolve
from .table import Variable, VariableTable, read_table

__all__ = ["signature_of", "target_kind", "read_signature_file"]


def target_kind(target: str) -> str:
    """'builder', 'meta-graph', 'keras', 'signature' or 'checkpoint', from the form of the URL."""
    if target.startswith("py:"):
        return "builder"
    path = target.split("?", 1)[0].rstrip("/")
    if path.endswith(".meta"):
        return "meta-graph"
    if path.endswith(".keras"):
        return "keras"
    if path.endswith(".json"):
        return "signature"
    return "checkpoint"


def signature_of(target: Any, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The :class:`VariableTable` of ``target``: a URL/path of any target kind, or a live TF object.

    Raises :class:`~warmstart.errors.InputError` subclasses when the target is missing or unreadable,
    :class:`UsageError` when it is of no known kind.
    """
    if isinstance(target, VariableTable):
        return target
    if hasattr(target, "__fspath__"):
        target = str(target)
    if not isinstance(target, str):
        from . import _tf_targets

        return _tf_targets.table_from_object(target)
    kind = target_kind(target)
    if kind == "checkpoint":
        return read_table(target, storage_options)
    if kind == "signature":
        return read_signature_file(target, storage_options)
    from . import _tf_targets

    if kind == "builder":
        return _tf_targets.table_from_builder(target)
    if kind == "meta-graph":
        return _tf_targets.table_from_meta_graph(target, storage_options)
    if kind == "keras":
        return _tf_targets.table_from_keras_file(target, storage_options)
    raise UsageError(f"unknown target kind {kind!r} for {target!r}")


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
            )
            for v in doc["variables"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{loc.url}: malformed variable entry in signature: {exc!r}") from None
    from .formats.dtypes import by_name

    for v in variables:
        try:
            by_name(v.dtype)
        except KeyError:
            raise CorruptCheckpointError(f"{loc.url}: variable {v.name!r} has unknown dtype {v.dtype!r}") from None
        if any(d is not None and d < 0 for d in v.shape):
            raise CorruptCheckpointError(f"{loc.url}: variable {v.name!r} has a negative dimension {list(v.shape)}")
    return VariableTable.of(variables, loc.url, "signature")
