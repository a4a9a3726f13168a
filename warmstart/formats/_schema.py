"""Protobuf message classes built in code from a small schema: no ``protoc``, no TensorFlow import.

A schema lists, per message, the fields warmstart reads with TensorFlow's field numbers; the runtime keeps
unknown fields, so a file with more fields stays readable. Types: the scalars below, another message of the
schema by name, or ``map:<message>`` (a ``map<string, message>``, as TF's ``attr`` and ``collection_def``).
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2, descriptor_pool, message
from google.protobuf.message_factory import GetMessageClass

__all__ = ["Schema", "message_classes"]

#: message name -> [(field name, number, type, repeated)]
Schema = Mapping[str, list[tuple[str, int, str, bool]]]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "fixed32": _F.TYPE_FIXED32,
            "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES}


def message_classes(file_name: str, package: str, schema: Schema,
                    oneofs: Mapping[str, tuple[str, str]] | None = None) -> dict[str, type[message.Message]]:
    """The message classes of ``schema`` (proto3), by message name. ``oneofs``: message -> (oneof name, its one
    field), for a field whose absence must be told from its default value."""
    file = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3")
    for name, fields in schema.items():
        msg = file.message_type.add(name=name)
        for fname, number, ftype, repeated in fields:
            f = msg.field.add(name=fname, number=number,
                              label=_F.LABEL_REPEATED if repeated or ftype.startswith("map:") else _F.LABEL_OPTIONAL)
            if ftype in _SCALARS:
                f.type = _SCALARS[ftype]
            elif ftype.startswith("map:"):
                f.type, f.type_name = _F.TYPE_MESSAGE, f".{package}.{name}.{_map_entry(msg, fname, ftype[4:], package)}"
            else:
                f.type, f.type_name = _F.TYPE_MESSAGE, f".{package}.{ftype}"
        if name in (oneofs or {}):
            oneof, fname = oneofs[name]  # type: ignore[index]
            msg.oneof_decl.add(name=oneof)
            next(f for f in msg.field if f.name == fname).oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}")) for name in schema}


def _map_entry(msg: descriptor_pb2.DescriptorProto, field_name: str, value: str, package: str) -> str:
    """Add the entry message of a ``map<string, value>`` field to ``msg``; return its name."""
    entry_name = "".join(part.capitalize() for part in field_name.split("_")) + "Entry"
    entry = msg.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL, type=_F.TYPE_MESSAGE,
                    type_name=f".{package}.{value}")
    return entry_name
