"""TensorFlow DataType enum values, their names, and NumPy equivalents (no TF import).

NumPy itself is imported when a dtype's NumPy type is first asked for (a transfer that only copies bytes never
does); the NumPy types of bfloat16, float8 and int4 come from ``ml_dtypes``, imported when such a type is first
met (importing it costs a cold process about 0.6 s, more than the rest of warmstart's imports together).
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DType", "by_enum", "by_name", "by_numpy", "is_value_preserving_cast"]

# The types NumPy has only through ml_dtypes, and the bytes of one element of each type by its name.
_ML_DTYPES = ("bfloat16", "float8_e5m2", "float8_e4m3fn", "int4", "uint4")
_ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
             "uint64": 8, "float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
             "bfloat16": 2, "float8_e5m2": 1, "float8_e4m3fn": 1, "int4": 1, "uint4": 1}


@dataclass(frozen=True, slots=True)
class DType:
    """One TF dtype: its ``types.proto`` enum value, its TF name and its NumPy dtype."""

    enum: int
    name: str
    stored: str | None  # the NumPy (or ml_dtypes) type of its little-endian bytes; None: not fixed-width

    @property
    def numpy(self) -> np.dtype | None:
        """The NumPy dtype of its little-endian bytes (None: not fixed-width)."""
        return None if self.stored is None else _numpy_dtype(self.stored)

    @property
    def itemsize(self) -> int | None:
        return None if self.stored is None else _ITEMSIZE[self.stored]

    @property
    def kind(self) -> str:
        """'bool', 'int', 'uint', 'float', 'complex', 'string' or 'other'."""
        if self.name == "bool":
            return "bool"
        if self.name in ("string", "variant", "resource"):
            return "string" if self.name == "string" else "other"
        if self.name.startswith("uint") or self.name == "quint8":
            return "uint"
        if self.name.startswith("int") or self.name.startswith("qint"):
            return "int"
        if self.name.startswith("complex"):
            return "complex"
        return "float"


# TF's DataType enum values (tensorflow/core/framework/types.proto), their names, and the NumPy type of
# their little-endian bytes (None: not fixed-width). Quantized types store plain integers.
_TABLE = [DType(enum, name, stored) for enum, name, stored in (
    (1, "float32", "float32"), (2, "float64", "float64"), (3, "int32", "int32"), (4, "uint8", "uint8"),
    (5, "int16", "int16"), (6, "int8", "int8"), (7, "string", None), (8, "complex64", "complex64"),
    (9, "int64", "int64"), (10, "bool", "bool"), (11, "qint8", "int8"), (12, "quint8", "uint8"),
    (13, "qint32", "int32"), (14, "bfloat16", "bfloat16"), (15, "qint16", "int16"),
    (16, "quint16", "uint16"), (17, "uint16", "uint16"), (18, "complex128", "complex128"),
    (19, "float16", "float16"), (20, "resource", None), (21, "variant", None), (22, "uint32", "uint32"),
    (23, "uint64", "uint64"), (24, "float8_e5m2", "float8_e5m2"),
    (25, "float8_e4m3fn", "float8_e4m3fn"), (29, "int4", "int4"), (30, "uint4", "uint4"),
)]
_BY_ENUM = {d.enum: d for d in _TABLE}
_BY_NAME = {d.name: d for d in _TABLE}
# Names TF and NumPy also use for the same types.
_ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bf16": "bfloat16"}


def by_enum(value: int) -> DType:
    """The dtype with TF enum ``value``; raises ``KeyError`` for an unknown value."""
    return _BY_ENUM[value]


def by_name(name: str) -> DType:
    """The dtype called ``name`` (TF names, plus half/float/double); raises ``KeyError``."""
    return _BY_NAME[_ALIASES.get(name, name)]


@functools.cache
def _numpy_dtype(name: str) -> np.dtype:
    import numpy as np

    return np.dtype(getattr(importlib.import_module("ml_dtypes"), name) if name in _ML_DTYPES else name)


@functools.cache
def _by_numpy() -> dict[Any, DType]:
    """The plain (non-quantized) type of each NumPy dtype, for files that store NumPy types (HDF5)."""
    return {d.numpy: d for d in reversed(_TABLE)
            if d.stored is not None and d.stored not in _ML_DTYPES and not d.name.startswith("q")}


def by_numpy(value: Any) -> DType:
    """The dtype stored as NumPy dtype ``value`` (little- or big-endian); raises ``KeyError``."""
    import numpy as np

    dtype = np.dtype(value).newbyteorder("=")
    found = _by_numpy().get(dtype)
    if found is None and "ml_dtypes" in sys.modules:  # an ml_dtypes type: whoever made it imported ml_dtypes
        found = next((d for d in _TABLE if d.stored in _ML_DTYPES and d.numpy == dtype), None)
    if found is None:
        raise KeyError(dtype)
    return found


# Casts that keep every value exactly (widening). Anything else between numeric types is lossy.
_EXACT_FLOAT_MANTISSA = {"float8_e5m2": 3, "float8_e4m3fn": 4, "bfloat16": 8, "float16": 11, "float32": 24, "float64": 53}
_INT_BITS = {"int4": 3, "int8": 7, "int16": 15, "int32": 31, "int64": 63,
             "uint4": 4, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}


def is_value_preserving_cast(src: str, dst: str) -> bool:
    """True when every value of dtype ``src`` is represented exactly in dtype ``dst``."""
    if src == dst:
        return True
    if src == "bool":
        return dst in _INT_BITS or dst in _EXACT_FLOAT_MANTISSA
    if src in _EXACT_FLOAT_MANTISSA and dst in _EXACT_FLOAT_MANTISSA:
        # Wider mantissa and wider exponent range. bfloat16 has float32's range, float16 does not.
        if src == "bfloat16":
            return dst in ("float32", "float64")
        if src.startswith("float8"):
            return dst in ("bfloat16", "float16", "float32", "float64")
        return _EXACT_FLOAT_MANTISSA[dst] > _EXACT_FLOAT_MANTISSA[src]
    if src in _INT_BITS and dst in _INT_BITS:
        src_signed, dst_signed = not src.startswith("u"), not dst.startswith("u")
        if src_signed and not dst_signed:
            return False
        return _INT_BITS[dst] >= _INT_BITS[src]
    if src in _INT_BITS and dst in _EXACT_FLOAT_MANTISSA:
        return _INT_BITS[src] <= _EXACT_FLOAT_MANTISSA[dst]
    if src in ("complex64",) and dst == "complex128":
        return True
    if src in ("float32", "float16", "bfloat16") and dst in ("complex64", "complex128"):
        return True
    if src == "float64" and dst == "complex128":
        return True
    return False
