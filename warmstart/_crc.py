"""CRC32C as TensorFlow and LevelDB use it, with their 'masking'."""

from __future__ import annotations

import google_crc32c

__all__ = ["crc32c", "extend", "mask", "unmask"]

_MASK_DELTA = 0xA282EAD8


def _readonly(data: bytes | bytearray | memoryview) -> bytes:
    # The C implementation takes bytes only; callers pass whole blocks as bytes, so this copies
    # only small slices and mutable buffers.
    return data if isinstance(data, bytes) else bytes(data)


def crc32c(data: bytes | memoryview) -> int:
    return google_crc32c.value(_readonly(data))


def extend(crc: int, data: bytes | memoryview) -> int:
    """CRC32C of (what gave ``crc``) + ``data``: for checking a tensor chunk by chunk."""
    return google_crc32c.extend(crc, _readonly(data))


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
