"""The few tensor-bundle protos, decoded and encoded by hand (protobuf wire format).

Only the fields warmstart needs (see shared/FORMAT.md); unknown fields are skipped when
decoding, so newer writers stay readable. Decoding raises ``ValueError`` on malformed bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "BundleHeader",
    "BundleEntry",
    "Slice",
    "decode_header",
    "decode_entry",
    "encode_header",
    "encode_entry",
    "read_varint",
    "write_varint",
]

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
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


def _fields(buf: bytes | memoryview):
    """Yield (field number, wire type, value) for each field; LEN values are memoryviews."""
    buf = memoryview(buf)
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == _FIXED64:
            if pos + 8 > len(buf):
                raise ValueError("truncated fixed64")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == _LEN:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        elif wire == _FIXED32:
            if pos + 4 > len(buf):
                raise ValueError("truncated fixed32")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True, slots=True)
class Slice:
    """One slice of a partitioned variable: per dimension (start, length); length -1 = whole dim."""

    extent: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class BundleHeader:
    num_shards: int = 1
    endianness: int = 0  # 0 little, 1 big
    producer: int = 1
    min_consumer: int = 0


@dataclass(frozen=True, slots=True)
class BundleEntry:
    dtype: int = 0
    shape: tuple[int, ...] = ()
    unknown_rank: bool = False
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked, as stored
    slices: tuple[Slice, ...] = field(default=())


def decode_header(buf: bytes | memoryview) -> BundleHeader:
    num_shards, endianness, producer, min_consumer = 0, 0, 0, 0
    for number, _, value in _fields(buf):
        if number == 1:
            num_shards = value
        elif number == 2:
            endianness = value
        elif number == 3:
            for vnum, _, vval in _fields(value):
                if vnum == 1:
                    producer = vval
                elif vnum == 2:
                    min_consumer = vval
    return BundleHeader(num_shards, endianness, producer, min_consumer)


def _decode_shape(buf) -> tuple[tuple[int, ...], bool]:
    dims: list[int] = []
    unknown_rank = False
    for number, _, value in _fields(buf):
        if number == 2:
            size = 0
            for dnum, _, dval in _fields(value):
                if dnum == 1:
                    size = _signed64(dval)
            dims.append(size)
        elif number == 3:
            unknown_rank = bool(value)
    return tuple(dims), unknown_rank


def _decode_slice(buf) -> Slice:
    extent = []
    for number, _, value in _fields(buf):
        if number == 1:
            start, length = 0, -1
            for enum_, _, eval_ in _fields(value):
                if enum_ == 1:
                    start = _signed64(eval_)
                elif enum_ == 2:
                    length = _signed64(eval_)
            extent.append((start, length))
    return Slice(tuple(extent))


def _fast_varint(b: bytes, pos: int) -> tuple[int, int]:
    x = b[pos]
    if x < 0x80:
        return x, pos + 1
    return read_varint(b, pos)


def decode_entry(buf: bytes | memoryview) -> BundleEntry:
    """Decode a ``BundleEntryProto``. A single pass over the bytes for the common shape (planning a
    100k-variable checkpoint decodes 100k of these); anything unusual takes the general path."""
    b = bytes(buf)
    n = len(b)
    pos = dtype = shard_id = offset = size = crc = 0
    dims: list[int] = []
    try:
        while pos < n:
            tag = b[pos]
            pos += 1
            if tag == 0x08:  # dtype
                dtype, pos = _fast_varint(b, pos)
            elif tag == 0x12:  # shape: repeated dim {size}
                length, pos = _fast_varint(b, pos)
                end = pos + length
                while pos < end:
                    if b[pos] != 0x12:  # not a dim (unknown_rank, names): general path
                        return _decode_entry_general(buf)
                    dim_len, pos = _fast_varint(b, pos + 1)
                    dim_end = pos + dim_len
                    value = 0
                    while pos < dim_end:
                        if b[pos] != 0x08:
                            return _decode_entry_general(buf)
                        value, pos = _fast_varint(b, pos + 1)
                    dims.append(_signed64(value))
                    pos = dim_end
            elif tag == 0x18:
                shard_id, pos = _fast_varint(b, pos)
            elif tag == 0x20:
                offset, pos = _fast_varint(b, pos)
            elif tag == 0x28:
                size, pos = _fast_varint(b, pos)
            elif tag == 0x35:  # crc32c, fixed32
                crc = int.from_bytes(b[pos : pos + 4], "little")
                pos += 4
            else:  # slices, unknown fields, multi-byte tags
                return _decode_entry_general(buf)
    except IndexError:
        raise ValueError("truncated bundle entry") from None
    if pos != n:
        raise ValueError("truncated bundle entry")
    return BundleEntry(dtype, tuple(dims), False, shard_id, _signed64(offset), _signed64(size), crc, ())


def _decode_entry_general(buf: bytes | memoryview) -> BundleEntry:
    dtype = shard_id = offset = size = crc = 0
    shape: tuple[int, ...] = ()
    unknown_rank = False
    slices: list[Slice] = []
    for number, _, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            shape, unknown_rank = _decode_shape(value)
        elif number == 3:
            shard_id = value
        elif number == 4:
            offset = _signed64(value)
        elif number == 5:
            size = _signed64(value)
        elif number == 6:
            crc = value
        elif number == 7:
            slices.append(_decode_slice(value))
    return BundleEntry(dtype, shape, unknown_rank, shard_id, offset, size, crc, tuple(slices))


def _tag(number: int, wire: int) -> bytes:
    return write_varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + write_varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _tag(number, _VARINT) + write_varint(value) if value else b""


def encode_header(header: BundleHeader) -> bytes:
    version = _varint_field(1, header.producer) + _varint_field(2, header.min_consumer)
    return _varint_field(1, header.num_shards) + _varint_field(2, header.endianness) + _len_field(3, version)


def _encode_shape(shape: tuple[int, ...]) -> bytes:
    return b"".join(_len_field(2, _varint_field(1, d)) for d in shape)


def _encode_slice(s: Slice) -> bytes:
    out = b""
    for start, length in s.extent:
        payload = _varint_field(1, start) + (b"" if length == -1 else _tag(2, _VARINT) + write_varint(length))
        out += _len_field(1, payload)
    return out


def encode_entry(entry: BundleEntry) -> bytes:
    out = _varint_field(1, entry.dtype) + _len_field(2, _encode_shape(entry.shape))
    out += _varint_field(3, entry.shard_id) + _varint_field(4, entry.offset) + _varint_field(5, entry.size)
    if not entry.slices:
        out += _tag(6, _FIXED32) + struct.pack("<I", entry.crc32c)
    for s in entry.slices:
        out += _len_field(7, _encode_slice(s))
    return out
