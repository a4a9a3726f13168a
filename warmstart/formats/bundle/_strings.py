"""String tensors in a bundle: ``[varint64 len_i ...][fixed32 masked CRC of the lengths][bytes ...]``.

The index entry's CRC covers each length as a little-endian uint32 (uint64 when larger), then the
4 stored CRC bytes, then the string bytes (tensor_bundle.cc, WriteStringTensor).
"""

from __future__ import annotations

import struct

from . import checksums
from ._protos import read_varint, write_varint

__all__ = ["frame_strings", "string_lengths", "string_entry_crc"]


def _length_bytes(n: int) -> bytes:
    return struct.pack("<I", n) if n <= 0xFFFFFFFF else struct.pack("<Q", n)


def frame_strings(items: list[bytes]) -> bytes:
    lengths_crc = 0
    for s in items:
        lengths_crc = checksums.extend(lengths_crc, _length_bytes(len(s)))
    lengths = b"".join(write_varint(len(s)) for s in items)
    return lengths + struct.pack("<I", checksums.mask(lengths_crc)) + b"".join(items)


def string_lengths(data: bytes, count: int) -> tuple[list[int], int]:
    """The ``count`` lengths and the position of the stored CRC; ``ValueError`` if they do not add up."""
    lengths, pos = [], 0
    for _ in range(count):
        n, pos = read_varint(data, pos)
        lengths.append(n)
    if pos + 4 + sum(lengths) != len(data):
        raise ValueError("string tensor lengths do not add up to its size")
    return lengths, pos


def string_entry_crc(data: bytes, count: int) -> int:
    """The masked entry CRC of framed string bytes; ``ValueError`` if the framing is broken."""
    lengths, pos = string_lengths(data, count)
    crc = 0
    for n in lengths:
        crc = checksums.extend(crc, _length_bytes(n))
    return checksums.mask(checksums.extend(crc, data[pos:]))
