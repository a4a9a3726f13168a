"""CRC32C as TensorFlow and LevelDB use it, with their 'masking'.

The ``crc32c`` package computes it with the CPU's CRC instructions (SSE4.2 / ARMv8), takes any
buffer (bytes, memoryview slices, mmap views: no copies) and releases the GIL on large inputs.
"""

from __future__ import annotations

import crc32c as _impl

__all__ = ["crc32c", "extend", "mask", "unmask", "HARDWARE"]

_MASK_DELTA = 0xA282EAD8

#: False when the package fell back to its software CRC (~10x slower; still correct).
HARDWARE = bool(_impl.hardware_based)


def crc32c(data) -> int:
    return _impl.crc32c(data)


def extend(crc: int, data) -> int:
    """CRC32C of (what gave ``crc``) + ``data``: for checking a tensor chunk by chunk."""
    return _impl.crc32c(data, crc)


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
