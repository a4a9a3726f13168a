"""Variable tables of TF1 graphs: MetaGraph files (``*.meta``, binary or text) and live ``tf.Graph`` objects.

The variables a default ``tf.compat.v1.train.Saver()`` saves (the ``variables`` collection), named by
their op names and keyed as the MetaGraph's own Saver stores them (its ``saver_def``: what
``import_meta_graph(...).restore`` reads; a default Saver's op names without one); a partitioned
variable is one logical variable with its full shape. TensorFlow is imported inside the functions only, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._quiet import quiet_import
from .. import storage
from ..errors import TargetError
from ..formats import dtypes
from ..formats.saver_keys import saver_keys
from .table import Variable, VariableTable

__all__ = ["parse_meta_graph", "table_from_meta_graph", "table_from_meta_graph_bytes", "table_from_graph", "dtype_name"]


def table_from_meta_graph(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variables a default TF1 ``Saver`` saves for the MetaGraph file (``*.meta``) at ``url``, keyed as
    the MetaGraph's own Saver stores them.

    Raises :class:`InputNotFoundError` when the file does not exist, :class:`StorageError` when it
    cannot be read, and :class:`TargetError` when it is not a valid MetaGraphDef or its Saver does not
    say one key for every variable.
    """
    loc = storage.resolve(url, storage_options)
    return table_from_meta_graph_bytes(storage.read_bytes(loc, storage.INDEX_BYTES), loc.url)


def table_from_meta_graph_bytes(data: bytes, origin: str) -> VariableTable:
    """The variables of a serialized MetaGraphDef (binary, or text format as TF also reads).

    Raises :class:`TargetError`, naming ``origin``, when ``data`` is not a usable MetaGraphDef.
    """
    return _table_from_meta_graph_def(parse_meta_graph(data, origin), origin)


def table_from_graph(graph: Any, origin: str | None = None) -> VariableTable:
    """The variables a default TF1 ``Saver`` would save for a live ``tf.Graph`` (or a Session's graph).

    Raises :class:`TargetError` when ``graph`` is neither, or its variables cannot be described.
    """
    tf = quiet_import("tensorflow")

    if isinstance(graph, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        graph = graph.graph
    if not isinstance(graph, tf.Graph):
        raise TargetError(f"expected a tf.Graph or a tf.compat.v1.Session. Received: {type(graph).__name__}")
    # export_meta_graph refuses to run while eager execution is on (TF2's default), even with an
    # explicit graph=; inside graph.as_default() the graph is the current context and it works.
    with graph.as_default():
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    return _table_from_meta_graph_def(meta_graph, origin or f"graph:{id(graph):#x}")


def parse_meta_graph(data: bytes, origin: str):
    """Parse MetaGraphDef bytes, binary or text format, as ``tf.compat.v1.train.import_meta_graph`` does.

    Raises :class:`TargetError` when neither gives a MetaGraphDef with a graph.
    """
    meta_graph = _parse_binary_meta_graph(data) or _parse_text_meta_graph(data)
    if meta_graph is None:
        raise TargetError(
            f"{origin} is not a TF MetaGraph (.meta) file: it parses as no MetaGraphDef holding a graph_def"
        )
    return meta_graph


def _parse_binary_meta_graph(data: bytes):
    """The binary MetaGraphDef in ``data`` if it holds a graph, else ``None``."""
    from google.protobuf import message
    meta_graph_pb2 = quiet_import("tensorflow.core.protobuf.meta_graph_pb2")

    meta_graph = meta_graph_pb2.MetaGraphDef()
    try:
        meta_graph.ParseFromString(data)
    except message.DecodeError:
        return None
    return meta_graph if meta_graph.HasField("graph_def") else None


def _parse_text_meta_graph(data: bytes):
    """The text-format MetaGraphDef in ``data`` if it holds a graph, else ``None``."""
    from google.protobuf import text_format
    meta_graph_pb2 = quiet_import("tensorflow.core.protobuf.meta_graph_pb2")

    meta_graph = meta_graph_pb2.MetaGraphDef()
    try:
        text_format.Merge(data.decode("utf-8"), meta_graph)
    except (UnicodeDecodeError, text_format.ParseError):
        return None
    return meta_graph if meta_graph.HasField("graph_def") else None


def _table_from_meta_graph_def(meta_graph, origin: str) -> VariableTable:
    """The table of a parsed MetaGraphDef: plain variables as they are, partition parts merged."""
    from google.protobuf import message
    variable_pb2 = quiet_import("tensorflow.core.framework.variable_pb2")

    nodes = {node.name: node for node in meta_graph.graph_def.node}
    plain: list[Variable] = []
    parts: dict[str, list[tuple[Any, Variable]]] = {}
    for raw in _variable_defs(meta_graph):
        try:
            var_def = variable_pb2.VariableDef.FromString(raw)
        except message.DecodeError as exc:
            raise TargetError(f"{origin}: malformed VariableDef in the 'variables' collection: {exc}") from None
        variable = _graph_variable(var_def, nodes, origin)
        if var_def.HasField("save_slice_info_def"):
            parts.setdefault(var_def.save_slice_info_def.full_name, []).append((var_def, variable))
        else:
            plain.append(variable)
    logical = plain + [_partitioned_variable(name, group, origin) for name, group in parts.items()]
    _check_unique(logical, origin)
    return VariableTable.of(_keyed_by_its_saver(logical, meta_graph, origin), origin, "tf1-graph")


def _keyed_by_its_saver(variables: list[Variable], meta_graph, origin: str) -> list[Variable]:
    """``variables`` with the keys the MetaGraph's own Saver (its ``saver_def``) stores them under, which
    ``import_meta_graph(...).restore`` reads; op names where it has none (a default Saver's keys). A variable that
    Saver does not save (``Saver(tf.compat.v1.trainable_variables())``, a Saver made before the optimizer) keeps its
    op name as its key: the output holds it too, where a default Saver would read it.

    Raises :class:`TargetError` when that Saver saves what is no variable, or uses an unsaved variable's op name as
    the key of another variable (the output would hold two values under one key).
    """
    found = saver_keys(meta_graph, origin)
    if found is None:
        return variables
    if found.others:
        key, source = found.others[0]
        raise TargetError(
            f"{origin}: the MetaGraph's Saver (its saver_def) also saves {key!r}, which is no variable of the "
            f"'variables' collection (it comes from {source}); warmstart writes variables only, so a restore through "
            "the MetaGraph would not find it in the output. Give a template checkpoint of the model instead"
        )
    holders = {key: name for name, key in found.keys.items()}
    for name in found.unsaved:
        if name in holders:
            raise TargetError(
                f"{origin}: variable {name!r} is in the 'variables' collection, but the MetaGraph's Saver (its "
                f"saver_def) does not save it and stores variable {holders[name]!r} under the key {name!r}: "
                f"warmstart writes a variable its Saver does not save under its op name, so {name!r} and "
                f"{holders[name]!r} would be two values under one key. Export the MetaGraph with a Saver that saves "
                f"{name!r} too, or that keys {holders[name]!r} otherwise"
            )
    return [replace(v, key=found.keys.get(v.name, v.name)) for v in variables]


def _variable_defs(meta_graph) -> list[bytes]:
    """The serialized VariableDefs of the GLOBAL_VARIABLES collection, which a default Saver saves."""
    collection = meta_graph.collection_def.get("variables")
    return list(collection.bytes_list.value) if collection is not None else []


def _graph_variable(var_def, nodes: dict[str, Any], origin: str) -> Variable:
    """One (possibly partial) variable from its VariableDef and its op's ``dtype``/``shape`` attrs.

    Raises :class:`TargetError` when the op is missing or lacks a known dtype or rank.
    """
    name = var_def.variable_name.split(":", 1)[0]
    node = nodes.get(name)
    if node is None:
        raise TargetError(f"{origin}: variable {name!r} is in the 'variables' collection but not in the graph")
    if "dtype" not in node.attr or "shape" not in node.attr:
        raise TargetError(f"{origin}: variable {name!r} is a {node.op} op without dtype and shape attributes")
    dtype = dtype_name(node.attr["dtype"].type, f"{origin}: variable {name!r}")
    shape = _shape_from_proto(node.attr["shape"].shape, f"{origin}: variable {name!r}")
    # A default Saver stores a variable under its op name (ResourceVariable._shared_name / op.name); the
    # MetaGraph's own Saver may say otherwise (_keyed_by_its_saver).
    return Variable(name, shape, dtype, key=name, initial=var_def.initializer_name or None)


def _partitioned_variable(full_name: str, group: list[tuple[Any, Variable]], origin: str) -> Variable:
    """One logical variable for the parts of a partitioned variable (the Saver stores it sliced under
    ``full_name``). Raises :class:`TargetError` when the parts disagree on dtype."""
    found = {part.dtype for _, part in group}
    if len(found) != 1:
        raise TargetError(f"{origin}: the parts of partitioned variable {full_name!r} have different dtypes {sorted(found)}")
    first_def, first = group[0]
    shape = tuple(int(d) for d in first_def.save_slice_info_def.full_shape)
    initial = ",".join(part.initial or part.name for _, part in group)
    return Variable(full_name, shape, first.dtype, key=full_name, initial=initial, partitions=len(group))


def _shape_from_proto(shape_proto, what: str) -> tuple[int | None, ...]:
    """A TensorShapeProto as a tuple, unknown dims as ``None``; raises :class:`TargetError` for unknown rank."""
    if shape_proto.unknown_rank:
        raise TargetError(f"{what} has a shape of unknown rank: give the variable a shape (at least its rank)")
    return tuple(int(d.size) if d.size >= 0 else None for d in shape_proto.dim)


def dtype_name(enum: int, what: str) -> str:
    """The warmstart name of TF dtype enum ``enum``; raises :class:`TargetError` for an unknown one."""
    try:
        return dtypes.by_enum(int(enum)).name
    except KeyError:
        raise TargetError(f"{what} has a dtype warmstart does not know (TF DataType enum {enum})") from None


def _check_unique(variables: list[Variable], origin: str) -> None:
    """Raise :class:`TargetError` when two variables share a name, as the Saver would refuse them."""
    seen: set[str] = set()
    for v in variables:
        if v.name in seen:
            raise TargetError(f"{origin}: two variables are saved under the name {v.name!r}")
        seen.add(v.name)

