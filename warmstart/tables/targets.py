"""``signature_of``: the variable table of any target kind.

URL targets are told apart by their form: ``py:module:function`` builders, ``*.meta`` MetaGraphs,
``*.keras`` Keras files, ``*.json`` signature files; anything else is a template checkpoint.
Live objects (a ``tf.Graph``, ``Session``, Keras model, ``tf.Module``) are accepted too.
TensorFlow is imported only for targets that need it, and the modules of a kind only for targets of that kind.
"""

from __future__ import annotations

from typing import Any, Literal

from ..errors import UsageError
from .signature import read_signature_file
from .table import VariableTable, read_table

__all__ = ["TargetKind", "target_kind", "signature_of"]

#: What a target given as a URL is, by its form (the one list; live objects are "live" where that matters).
TargetKind = Literal["builder", "meta-graph", "keras", "keras-weights", "signature", "checkpoint"]


def target_kind(target: str) -> TargetKind:
    """'builder', 'meta-graph', 'keras', 'keras-weights' (``.weights.h5``, ``.h5``, ``.weights.json``),
    'signature' or 'checkpoint', from the form of the URL."""
    if target.startswith("py:"):
        return "builder"
    path = target.split("?", 1)[0].rstrip("/")
    if path.endswith(".meta"):
        return "meta-graph"
    if path.endswith(".keras"):
        return "keras"
    if path.endswith((".h5", ".weights.json")):
        return "keras-weights"
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
        from .builders import table_from_object

        return table_from_object(target)
    kind = target_kind(target)
    if kind == "checkpoint":
        from ..formats import open_source
        from .tf1_template import checkpoint_table

        return checkpoint_table(open_source(target, storage_options), "target")
    if kind == "signature":
        return read_signature_file(target, storage_options)
    if kind == "keras-weights":
        return read_table(target, storage_options)
    if kind == "builder":
        from .builders import table_from_builder

        return table_from_builder(target)
    if kind == "meta-graph":
        from .tf_graphs import table_from_meta_graph

        return table_from_meta_graph(target, storage_options)
    if kind == "keras":
        from .keras_files import table_from_keras_file

        return table_from_keras_file(target, storage_options)
    raise UsageError(f"unknown target kind {kind!r} for {target!r}")


def signature_for(target: Any, source_kind: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The target's table for a source of ``source_kind``: for a Keras weights source and a ``.keras``
    target, the archive's own weights (named like the source, read without building the model);
    otherwise :func:`signature_of`."""
    if hasattr(target, "__fspath__"):
        target = str(target)
    if source_kind == "keras-weights" and isinstance(target, str) and target_kind(target) == "keras":
        return read_table(target, storage_options)
    return signature_of(target, storage_options)
