"""TensorFlow DataType enum values, their names, and NumPy equivalents (no TF import)."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

__all__ = ["DType", "by_enum", "by_name", "is_value_preserving_cast"]


@dataclass(frozen=True, slots=True)
class DType:
    """One TF dtype: its ``types.proto`` enum value, its TF name and its NumPy dtype."""

    enum: int
    name: str
    numpy: np.dtype | None  # None for string and variant: not fixed-width

    @property
    def itemsize(self) -> int | None:
        return None if self.numpy is None else self.numpy.itemsize

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


_TABLE = [
    DType(1, "float32", np.dtype(np.float32)),
    DType(2, "float64", np.dtype(np.float64)),
    DType(3, "int32", np.dtype(np.int32)),
    DType(4, "uint8", np.dtype(np.uint8)),
    DType(5, "int16", np.dtype(np.int16)),
    DType(6, "int8", np.dtype(np.int8)),
    DType(7, "string", None),
    DType(8, "complex64", np.dtype(np.complex64)),
    DType(9, "int64", np.dtype(np.int64)),
    DType(10, "bool", np.dtype(np.bool_)),
    DType(11, "qint8", np.dtype(np.int8)),
    DType(12, "quint8", np.dtype(np.uint8)),
    DType(13, "qint32", np.dtype(np.int32)),
    DType(14, "bfloat16", np.dtype(ml_dtypes.bfloat16)),
    DType(15, "qint16", np.dtype(np.int16)),
    DType(16, "quint16", np.dtype(np.uint16)),
    DType(17, "uint16", np.dtype(np.uint16)),
    DType(18, "complex128", np.dtype(np.complex128)),
    DType(19, "float16", np.dtype(np.float16)),
    DType(20, "resource", None),
    DType(21, "variant", None),
    DType(22, "uint32", np.dtype(np.uint32)),
    DType(23, "uint64", np.dtype(np.uint64)),
    DType(24, "float8_e5m2", np.dtype(ml_dtypes.float8_e5m2)),
    DType(25, "float8_e4m3fn", np.dtype(ml_dtypes.float8_e4m3fn)),
    DType(29, "int4", np.dtype(ml_dtypes.int4)),
    DType(30, "uint4", np.dtype(ml_dtypes.uint4)),
]
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
