"""A TF1 MetaGraph (``.meta``, what ``Saver.save`` writes beside a checkpoint) read without TensorFlow: only the
fields that say how its Saver keys the variables (:mod:`.saver_keys`).

The descriptors follow TensorFlow's ``meta_graph.proto``, ``saver.proto``, ``graph.proto``, ``node_def.proto``,
``attr_value.proto``, ``tensor.proto`` and ``variable.proto`` with TF's field names and numbers, so code that reads
these fields reads TF's own parsed ``MetaGraphDef`` alike. The ``protobuf`` runtime checks wire types, lengths
and UTF-8, and keeps what it does not know. No enum field is declared: a text-format MetaGraph spells enums by name
(``DT_FLOAT``), which an undeclared field skips.
"""

from __future__ import annotations

from google.protobuf import message, text_format

from ..errors import TargetError
from ._schema import Schema, message_classes

__all__ = ["parse_meta_graph_def", "parse_variable_def"]

_SCHEMA: Schema = {
    "MetaGraphDef": [("graph_def", 2, "GraphDef", False), ("saver_def", 3, "SaverDef", False),
                     ("collection_def", 4, "map:CollectionDef", False)],
    "SaverDef": [("filename_tensor_name", 1, "string", False), ("save_tensor_name", 2, "string", False),
                 ("restore_op_name", 3, "string", False)],
    "GraphDef": [("node", 1, "NodeDef", True)],
    "NodeDef": [("name", 1, "string", False), ("op", 2, "string", False), ("input", 3, "string", True),
                ("attr", 5, "map:AttrValue", False)],
    "AttrValue": [("tensor", 8, "TensorProto", False)],
    "TensorProto": [("tensor_shape", 2, "TensorShapeProto", False), ("string_val", 8, "bytes", True)],
    "TensorShapeProto": [("dim", 2, "Dim", True), ("unknown_rank", 3, "bool", False)],
    "Dim": [("size", 1, "int64", False)],
    "CollectionDef": [("bytes_list", 2, "BytesList", False)],
    "BytesList": [("value", 1, "bytes", True)],
    "VariableDef": [("variable_name", 1, "string", False), ("initializer_name", 2, "string", False),
                    ("save_slice_info_def", 4, "SaveSliceInfoDef", False), ("is_resource", 5, "bool", False)],
    "SaveSliceInfoDef": [("full_name", 1, "string", False), ("full_shape", 2, "int64", True),
                         ("var_offset", 3, "int64", True), ("var_shape", 4, "int64", True)],
}
_CLASSES = message_classes("warmstart_meta_graph.proto", "warmstart.tf1", _SCHEMA)


def parse_meta_graph_def(data: bytes, origin: str) -> message.Message:
    """The MetaGraphDef in ``data``, binary or text format (as ``import_meta_graph`` reads both).

    Raises :class:`TargetError` naming ``origin`` when neither gives a MetaGraphDef holding a graph.
    """
    meta_graph = _CLASSES["MetaGraphDef"]()
    try:
        meta_graph.ParseFromString(data)
    except message.DecodeError:
        meta_graph.Clear()
    if not meta_graph.HasField("graph_def"):
        try:
            text_format.Parse(data.decode("utf-8"), meta_graph, allow_unknown_field=True)
        except (UnicodeDecodeError, text_format.ParseError):
            meta_graph.Clear()
    if not meta_graph.HasField("graph_def"):
        raise TargetError(f"{origin} is not a TF MetaGraph (.meta) file: it parses as no MetaGraphDef holding a "
                          "graph_def")
    return meta_graph


def parse_variable_def(data: bytes, origin: str) -> message.Message:
    """One serialized ``VariableDef`` of a MetaGraph's ``variables`` collection; raises :class:`TargetError`."""
    variable_def = _CLASSES["VariableDef"]()
    try:
        variable_def.ParseFromString(data)
    except message.DecodeError as exc:
        raise TargetError(f"{origin}: malformed VariableDef in the 'variables' collection: {exc}") from None
    return variable_def
