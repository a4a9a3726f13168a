"""A TF1 checkpoint, source or template, named as the MetaGraph beside it (``<prefix>.meta``) names its variables.

A checkpoint alone says keys. When the MetaGraph's own Saver stored a variable under another key than its op name
(``tf.compat.v1.train.Saver({"renamed/a": a})``), the checkpoint's variable is named by its op name, as the same
model given as a ``.meta`` target is, and keeps the checkpoint key as its ``key`` (an alias rules accept; what a
source is read by, what an output is written under, what ``import_meta_graph(meta).restore`` reads). So a model
saved by a renaming Saver matches itself by op name whichever side of a transfer it is on. Without a ``.meta``, a
``saver_def`` or a renaming Saver, the table is the checkpoint's as it is. No TensorFlow: the MetaGraph is read by
:mod:`warmstart.formats.meta_graph`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from ..errors import CorruptCheckpointError, InputError, TargetError
from .table import Variable, VariableTable, table_from_reader

if TYPE_CHECKING:
    from ..formats import BundleReader, KerasWeightsReader
    from ..formats.saver_keys import SaverKeys

__all__ = ["checkpoint_table", "named_by_its_graph", "Role"]

#: What the checkpoint is to the transfer: its errors are a TargetError for a template, a CorruptCheckpointError for
#: a source.
Role = Literal["source", "target"]


def checkpoint_table(reader: "BundleReader | KerasWeightsReader", role: Role) -> VariableTable:
    """The table of a source or a template (a checkpoint, a Keras weights file): a TF1 checkpoint's named by the
    MetaGraph beside it (:func:`named_by_its_graph`)."""
    return named_by_its_graph(table_from_reader(reader), reader, role)  # type: ignore[arg-type]


def named_by_its_graph(table: VariableTable, reader: "BundleReader", role: Role) -> VariableTable:
    """``table`` (of the TF1 checkpoint ``reader`` reads) with the op names its MetaGraph gives the variables
    its Saver stores under other keys. The ``.meta`` read is recorded by ``reader`` (a plan pins it).

    Raises :class:`TargetError` (a template) or :class:`CorruptCheckpointError` (a source) naming the ``.meta``
    when it is no MetaGraph, its Saver does not say one key per variable, or it saves a key the checkpoint does not
    hold (the two were not written together).
    """
    if table.kind != "tf1-checkpoint":
        return table
    beside = reader.read_beside(".meta")
    if beside is None:
        return table
    meta, data = beside
    from ..formats.meta_graph import parse_meta_graph_def  # only with a .meta beside: ~3 ms of every other start
    from ..formats.saver_keys import saver_keys

    try:
        found = saver_keys(parse_meta_graph_def(data, meta.url), meta.url)
    except TargetError as exc:
        raise _refusal(role, str(exc), meta.url, table.origin) from None
    if found is None or not found.renames:
        return table
    renamed = _renamed(table, found, meta.url, role)
    _check_unique(renamed, meta.url, table.origin, role)
    return VariableTable.of(renamed, table.origin, table.kind)


def _renamed(table: VariableTable, found: SaverKeys, meta_url: str, role: Role) -> list[Variable]:
    names = {key: name for name, key in found.keys.items()}
    missing = sorted(set(names) - {v.key for v in table.variables})
    if missing:
        raise _refusal(role, f"{meta_url}: its Saver saves the key {missing[0]!r}, which {table.origin} does not hold: "
                             "the checkpoint and the MetaGraph beside it were not written by the same Saver",
                       meta_url, table.origin)
    return [replace(v, name=names[v.key]) if v.key in names else v for v in table.variables]


def _check_unique(variables: list[Variable], meta_url: str, origin: str, role: Role) -> None:
    seen: dict[str, str] = {}
    for v in variables:
        if v.name in seen:
            raise _refusal(role, f"{meta_url}: the checkpoint's tensors {seen[v.name]!r} and {v.key!r} would both be "
                                 f"named {v.name!r}: its Saver stores variable {v.name!r} under another key, and the "
                                 "checkpoint holds another tensor under that name", meta_url, origin)
        seen[v.name] = v.key


def _refusal(role: Role, message: str, meta_url: str, origin: str) -> InputError:
    """The error for a MetaGraph beside a checkpoint that cannot name its variables, saying what to do."""
    error, what = (TargetError, "template") if role == "target" else (CorruptCheckpointError, "source checkpoint")
    return error(f"{message}. warmstart names the variables of {what} {origin} by the MetaGraph beside it "
                 f"({meta_url}), as its Saver stored them: move that .meta away if it is not this checkpoint's, or "
                 "give a checkpoint saved together with its .meta (Saver.save writes both)")
