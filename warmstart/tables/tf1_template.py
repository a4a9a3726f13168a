"""A TF1 template checkpoint named as the MetaGraph beside it (``<prefix>.meta``) names its variables.

A checkpoint alone says keys. When the MetaGraph's own Saver stored a variable under another key than its op name
(``tf.compat.v1.train.Saver({"renamed/a": a})``), the template's variable is named by its op name, as the same
model given as a ``.meta`` target is, and keeps the checkpoint key as its ``key`` (an alias rules accept): what an
output is written under, and what ``import_meta_graph(meta).restore`` reads. Without a ``.meta``, a ``saver_def``
or a renaming Saver, the table is the checkpoint's as it is. No TensorFlow: the MetaGraph is read by
:mod:`warmstart.formats.meta_graph`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import InputNotFoundError, TargetError
from ..formats.meta_graph import parse_meta_graph_def
from ..formats.saver_keys import saver_keys
from ..storage import INDEX_BYTES, read_bytes
from .table import Variable, VariableTable, table_from_reader

if TYPE_CHECKING:
    from ..formats import BundleReader, KerasWeightsReader

__all__ = ["template_table", "named_by_its_graph"]


def template_table(reader: "BundleReader | KerasWeightsReader") -> VariableTable:
    """The table of a template (a checkpoint, a Keras weights file): a TF1 checkpoint's named by its MetaGraph."""
    return named_by_its_graph(table_from_reader(reader), reader)  # type: ignore[arg-type]


def named_by_its_graph(table: VariableTable, reader: "BundleReader") -> VariableTable:
    """``table`` (of the TF1 checkpoint ``reader`` reads) with the op names its MetaGraph gives the variables
    its Saver stores under other keys.

    Raises :class:`TargetError` naming the ``.meta`` when it is no MetaGraph, its Saver does not say one key per
    variable, or it saves a key the checkpoint does not hold (the two were not written together).
    """
    if table.kind != "tf1-checkpoint":
        return table
    meta = reader.prefix.with_suffix(".meta")
    try:
        data = read_bytes(meta, INDEX_BYTES)
    except InputNotFoundError:
        return table
    found = saver_keys(parse_meta_graph_def(data, meta.url), meta.url)
    if found is None or not found.renames:
        return table
    names = {key: name for name, key in found.keys.items()}
    missing = sorted(set(names) - {v.key for v in table.variables})
    if missing:
        raise TargetError(f"{meta.url}: its Saver saves the key {missing[0]!r}, which {table.origin} does not hold: "
                          "the checkpoint and the MetaGraph beside it were not written by the same Saver")
    renamed = [replace(v, name=names[v.key]) if v.key in names else v for v in table.variables]
    _check_unique(renamed, meta.url)
    return VariableTable.of(renamed, table.origin, table.kind)


def _check_unique(variables: list[Variable], meta_url: str) -> None:
    seen: dict[str, str] = {}
    for v in variables:
        if v.name in seen:
            raise TargetError(f"{meta_url}: the template's tensors {seen[v.name]!r} and {v.key!r} would both be named "
                              f"{v.name!r}: its Saver stores variable {v.name!r} under another key, and the checkpoint "
                              "holds another tensor under that name")
        seen[v.name] = v.key
