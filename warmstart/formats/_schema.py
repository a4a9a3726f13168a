"""Protobuf message classes built in code from a small schema: no ``protoc``, no TensorFlow import.

A schema lists, per message, the fields warmstart reads with TensorFlow's field numbers; the runtime keeps
unknown fields, so a file with more fields stays readable. Types: the scalars below, another message of the
schema by name, or ``map:<message>`` (a ``map<string, message>``, as TF's ``attr`` and ``collection_def``).

The schema's ``FileDescriptorProto`` is encoded here (descriptor.proto's field numbers) and the classes are made
by protobuf's upb runtime (its default) directly: the public route (``descriptor_pb2``, ``descriptor_pool``,
``message_factory``) imports the pure-Python message machinery besides, ~13 ms of every command that reads a
checkpoint. Any other runtime, or a upb without that interface, takes the public route.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import message

__all__ = ["Schema", "message_classes", "file_descriptor", "read_varint", "write_varint"]

#: message name -> [(field name, number, type, repeated)]
Schema = Mapping[str, list[tuple[str, int, str, bool]]]

# FieldDescriptorProto.Type and .Label numbers (descriptor.proto)
_SCALARS = {"int32": 5, "int64": 3, "fixed32": 7, "bool": 8, "string": 9, "bytes": 12}
_TYPE_MESSAGE, _LABEL_OPTIONAL, _LABEL_REPEATED = 11, 1, 3


def message_classes(file_name: str, package: str, schema: Schema, oneofs: Mapping[str, tuple[str, str]] | None = None,
                    fast: bool = True) -> dict[str, type[message.Message]]:
    """The message classes of ``schema`` (proto3), by message name, in a descriptor pool of their own.
    ``oneofs``: message -> (oneof name, its one field), for a field whose absence must be told from its default
    value. ``fast=False`` takes the public route (what a runtime other than upb takes)."""
    serialized = file_descriptor(file_name, package, schema, oneofs)
    if fast:
        try:
            from google._upb import _message as upb

            pool = upb.DescriptorPool()
            pool.AddSerializedFile(serialized)
            return {name: upb.MessageMeta(name, (message.Message,), {
                "DESCRIPTOR": pool.FindMessageTypeByName(f"{package}.{name}"), "__module__": None})
                for name in schema}
        except (ImportError, AttributeError, TypeError):
            pass
    from google.protobuf import descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(serialized)
    return {name: GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}")) for name in schema}


def file_descriptor(file_name: str, package: str, schema: Schema,
                    oneofs: Mapping[str, tuple[str, str]] | None = None) -> bytes:
    """The serialized ``FileDescriptorProto`` declaring ``schema`` (see :func:`message_classes`)."""
    out = [_field(1, file_name), _field(2, package)]
    for name, fields in schema.items():
        oneof = (oneofs or {}).get(name)
        msg, entries = [_field(1, name)], []
        for fname, number, ftype, repeated in fields:
            parts = [_field(1, fname), _field(3, number),
                     _field(4, _LABEL_REPEATED if repeated or ftype.startswith("map:") else _LABEL_OPTIONAL)]
            if ftype in _SCALARS:
                parts.append(_field(5, _SCALARS[ftype]))
            elif ftype.startswith("map:"):
                entry = "".join(part.capitalize() for part in fname.split("_")) + "Entry"
                entries.append(_map_entry(entry, f".{package}.{ftype[4:]}"))
                parts += [_field(5, _TYPE_MESSAGE), _field(6, f".{package}.{name}.{entry}")]
            else:
                parts += [_field(5, _TYPE_MESSAGE), _field(6, f".{package}.{ftype}")]
            if oneof is not None and fname == oneof[1]:
                parts.append(_field(9, 0))
            msg.append(_field(2, b"".join(parts)))
        msg += [_field(3, entry) for entry in entries]
        if oneof is not None:
            msg.append(_field(8, _field(1, oneof[0])))
        out.append(_field(4, b"".join(msg)))
    out.append(_field(12, "proto3"))
    return b"".join(out)


def _map_entry(name: str, value_type: str) -> bytes:
    """The ``DescriptorProto`` of a ``map<string, message>`` field's entry: key 1, value 2, ``map_entry`` set."""
    key = _field(1, "key") + _field(3, 1) + _field(4, _LABEL_OPTIONAL) + _field(5, _SCALARS["string"])
    value = _field(1, "value") + _field(3, 2) + _field(4, _LABEL_OPTIONAL) + _field(5, _TYPE_MESSAGE) + _field(6, value_type)
    return _field(1, name) + _field(2, key) + _field(2, value) + _field(7, _field(7, 1))


def _field(tag: int, value: int | str | bytes) -> bytes:
    """One protobuf field: a varint for an int, length-delimited for text or bytes."""
    if isinstance(value, int):
        return write_varint(tag << 3) + write_varint(value)
    data = value.encode() if isinstance(value, str) else value
    return write_varint(tag << 3 | 2) + write_varint(len(data)) + data


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position). ``ValueError`` if malformed."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def write_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields encode negatives as 10-byte two's complement
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)
