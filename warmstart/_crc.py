"""CRC32C as TensorFlow and LevelDB use it, with their 'masking'."""

from __future__ import annotations

import google_crc32c

__all__ = ["crc32c", "extend", "mask", "unmask"]

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes | memoryview) -> int:
    return google_crc32c.value(bytes(data) if isinstance(data, memoryview) and not data.contiguous else data)


def extend(crc: int, data: bytes | memoryview) -> int:
    """CRC32C of (what gave ``crc``) + ``data``: for checking a tensor chunk by chunk."""
    return google_crc32c.extend(crc, data)


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
