"""TF's OrderedCode, just enough to build the index key of one slice of a partitioned variable.

TF stores each slice under ``EncodeTensorNameSlice(name, slice)``:
NumIncreasing(0) + String(name) + NumIncreasing(rank) + per dim SignedNumIncreasing(start),
SignedNumIncreasing(length), with length -1 meaning the whole dimension.
"""

from __future__ import annotations

__all__ = ["slice_key"]

# Header bits by encoded length (OrderedCode::kLengthToHeaderBits), lengths 1..10.
_HEADER = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0), (0xFE, 0), (0xFF, 0),
           (0xFF, 0x80), (0xFF, 0xC0)]


def _num_increasing(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _string(value: bytes) -> bytes:
    return value.replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _signed_num_increasing(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    # Length L carries 7L - 1 magnitude bits (L header bits and one sign bit per byte's worth).
    length = 1
    while magnitude >= 1 << (7 * length - 1):
        length += 1
    if length > 10:
        raise ValueError(f"{value} does not fit OrderedCode's signed encoding")
    sign_fill = 0xFF if value < 0 else 0x00
    raw = bytearray((value & ((1 << 64) - 1)).to_bytes(8, "big"))
    raw = bytearray([sign_fill, sign_fill]) + raw
    encoded = raw[len(raw) - length :]
    encoded[0] ^= _HEADER[length][0]
    if length > 1:
        encoded[1] ^= _HEADER[length][1]
    return bytes(encoded)


def slice_key(name: str, extent: tuple[tuple[int, int], ...]) -> bytes:
    """The index key of the slice ``extent`` ((start, length) per dim; length -1 = full) of ``name``."""
    out = _num_increasing(0) + _string(name.encode()) + _num_increasing(len(extent))
    for start, length in extent:
        out += _signed_num_increasing(start) + _signed_num_increasing(length)
    return out
