"""Naming a TF2 checkpoint's variables by the layer names of the model that wrote it.

A TF2 checkpoint of a functional Keras model knows its variables only by object paths through
lists (``model/_operations/3/_kernel``): a plan matching by them is positional, and a layer inserted
before others shifts every match after it. Given the model the checkpoint was written from (its
``.keras`` file or a ``py:`` builder: the rule ``source_structure``), each variable is named as that
model names it (``variable.path``: ``enc2/kernel``), found by the checkpoint key
``tf.train.Checkpoint(model=...)`` gives it, so matches rest on layer names. The object path stays
an alias (rules written against it keep working).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UsageError
from .code_policy import refuse_code_in_rules
from .table import Variable, VariableTable
from .targets import signature_of

__all__ = ["named_by_structure"]

_MODEL_ROOT = "model"  # the attribute table_from_trackable checkpoints the model under


def named_by_structure(source: VariableTable, structure: Any,
                       storage_options: dict[str, Any] | None = None) -> VariableTable:
    """``source`` (a TF2 checkpoint's table) with each variable of ``structure``'s model named by it.

    Raises :class:`UsageError` when ``source`` is not a TF2 checkpoint, when ``structure`` is not a
    model, and when it does not describe the source: one of its variables missing from the source or
    of another shape (no name is given by accident).
    """
    if source.kind != "tf2-checkpoint":
        raise UsageError(
            f"source_structure names the variables of a TF2 checkpoint; {source.origin} is a {source.kind}")
    refuse_code_in_rules(structure, "rules")  # rules are data: their builder runs only if code is allowed
    model = signature_of(structure, storage_options)
    if model.kind not in ("keras", "module"):
        raise UsageError(f"source_structure {model.origin} is a {model.kind}: give the source model's .keras file "
                         "or a py:module:function builder")
    root = _root(source, model)
    by_key = {root + v.key[len(_MODEL_ROOT):]: v for v in model.variables}
    renamed, found, differ = [], set(), []
    for v in source.variables:
        m = by_key.get(v.key)
        if m is None:  # optimizer slots, counters, other objects of the checkpoint
            renamed.append(v)
            continue
        found.add(m.key)
        if tuple(m.shape) != tuple(v.shape):
            differ.append(f"{m.name} {list(m.shape)} vs {list(v.shape)} at {v.name}")
        renamed.append(_named(v, m))
    missing = [m.name for m in model.variables if m.key not in found]
    if missing or differ:
        what = (f"{len(missing)} of its variables are not in the source (e.g. {missing[0]!r})" if missing
                else f"{len(differ)} shapes differ (e.g. {differ[0]})")
        raise UsageError(f"source_structure {model.origin} does not describe the source {source.origin}: {what}")
    return VariableTable.of(renamed, source.origin, source.kind)


def _named(v: Variable, m: Variable) -> Variable:
    """The checkpoint's variable with every name the model gives it (its object path kept as an alias)."""
    return dataclasses.replace(v, name=m.name, object_path=v.name, weights_path=m.weights_path,
                               structure=m.structure, anchor=m.anchor, generated=m.generated,
                               positional=m.positional)


def _root(source: VariableTable, model: VariableTable) -> str:
    """The attribute the source checkpointed the model under (``model`` in ``tf.train.Checkpoint(model=m)``):
    the first path component under which most of the model's keys are found."""
    keys = {v.key for v in source.variables}
    roots = {k.split("/", 1)[0] for k in keys}
    tails = [v.key[len(_MODEL_ROOT):] for v in model.variables]
    return max(sorted(roots), key=lambda r: sum(r + t in keys for t in tails), default=_MODEL_ROOT)
