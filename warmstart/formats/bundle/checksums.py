"""CRC32C as TensorFlow and LevelDB use it, with their 'masking'.

The ``crc32c`` package computes it with the CPU's CRC instructions (SSE4.2 / ARMv8), takes any
buffer (bytes, memoryview slices, mmap views: no copies) and releases the GIL on large inputs.

Its compiled module is loaded on its own: the package's ``__init__`` looks up its version in the
installed distributions' metadata, which costs 10-15 ms of every command's start-up (more with many
packages installed). Where the package is laid out otherwise, it is imported as usual.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os


def _load_extension():
    """The package's compiled module, loaded without running the package's ``__init__``; else the package."""
    spec = importlib.util.find_spec("crc32c")  # finds the package without running it
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if os.path.isfile(path):
                ext = importlib.util.spec_from_file_location("crc32c._crc32c", path)
                module = importlib.util.module_from_spec(ext)
                ext.loader.exec_module(module)
                return module
    import crc32c

    return crc32c


_impl = _load_extension()

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
