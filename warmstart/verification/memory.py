"""Freed memory back to the system while a certificate runs.

glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MiB): after the first large
NumPy arrays and TensorFlow tensors come and go, blocks of a few MiB (a layer's weights read from a file, its
outputs) are carved from the heap, and the heap keeps them once freed. The certificate reads and converts every
compared variable once per side, so the kept blocks add up (a BERT-base certificate's peak, VmHWM, is 67 MiB lower with the
setting). Setting the threshold to its starting value (128 KiB) fixes it there: blocks of
128 KiB or more are mapped and unmapped, returned to the system when freed. What is computed is unchanged; the
setting holds for the rest of the process (glibc has no call to make the threshold adaptive again). Elsewhere
than glibc (macOS, musl) nothing is done. Because it holds for the whole process, the library never sets it in a
caller's process: warmstart's own commands (``warmstart verify``, ``transfer --verify``) do, and a program that
certifies in its own process may call :func:`return_freed_memory` first.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["return_freed_memory"]

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD = 128 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MIN, where it starts
_done = False


def return_freed_memory() -> bool:
    """Make glibc return freed blocks of 128 KiB or more to the system (once per process); False where malloc is
    not glibc's."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt sets nothing)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
    return _done
