"""Comparing outputs: the largest absolute and relative differences, and the tolerance a comparison is held to.

Bit-equal (``atol = rtol = 0``) where the values were copied and the layers are configured alike: the same
operations on the same numbers give the same numbers. After a cast, or between two implementations (a declared
pair: a TF1 graph against a Keras model), the tolerance comes from the least precise dtype involved. NumPy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Difference", "difference", "tolerance", "magnitude", "LAYER_FACTOR", "PAIR_FACTOR"]

# Multiples of the machine epsilon of the least precise dtype: a cast changes each value by at most half an ulp,
# a layer's sum over its inputs adds that up; two implementations of one computation order their sums differently.
LAYER_FACTOR = 8
PAIR_FACTOR = 128
_EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7,
        "float8_e4m3fn": 2.0 ** -3, "float8_e5m2": 2.0 ** -2}
_TINY = 1e-30


@dataclass(frozen=True, slots=True)
class Difference:
    """How far target outputs are from source outputs, and whether that is within the tolerance."""

    max_abs: float
    max_rel: float  # max_abs relative to the largest source output
    compared: int
    within: bool
    cause: str | None = None  # when the outputs cannot be compared value by value (shapes, structure)


def tolerance(dtypes: Iterable[str], scale: float, factor: int = LAYER_FACTOR) -> tuple[float, float]:
    """(atol, rtol) for values that went through ``dtypes``: ``factor`` machine epsilons of the least precise float
    among them, relative; absolute, the same times ``scale`` (the outputs' magnitude: :func:`magnitude`)."""
    eps = max((_EPS.get(d, 0.0) for d in dtypes), default=0.0) or _EPS["float32"]
    return factor * eps * max(scale, _TINY), factor * eps


def magnitude(outputs: Sequence[np.ndarray]) -> float:
    """The largest finite absolute value among ``outputs`` (0 when there is none)."""
    found = [float(np.max(np.abs(x[np.isfinite(x)]))) for x in (_as_float(np.asarray(o)) for o in outputs)
             if np.isfinite(x).any()]
    return max(found, default=0.0)


def difference(source: Sequence[np.ndarray], target: Sequence[np.ndarray], atol: float, rtol: float) -> Difference:
    """Compare two lists of outputs (a layer's outputs, flattened): within when ``|t - s| <= atol + rtol * |s|``
    everywhere; with ``atol = rtol = 0`` the outputs must be equal bit for bit (NaN where NaN). Outputs equal byte
    for byte are not converted (a large layer's outputs cost no copy)."""
    if len(source) != len(target):
        return Difference(float("inf"), float("inf"), 0, False,
                          f"the target gives {len(target)} outputs, the source {len(source)}")
    max_abs = 0.0
    compared, within = 0, True
    for i, (s, t) in enumerate(zip(source, target)):
        s, t = np.asarray(s), np.asarray(t)
        if s.shape != t.shape:
            return Difference(float("inf"), float("inf"), compared, False,
                              f"output {i} has shape {list(t.shape)} in the target, {list(s.shape)} in the source")
        compared += int(s.size)
        if s.dtype == t.dtype and np.array_equal(s.reshape(-1).view(np.uint8), t.reshape(-1).view(np.uint8)):
            continue
        a, b = _as_float(s), _as_float(t)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(b - a))
        diff[np.isnan(diff)] = np.inf  # NaN on one side only
        max_abs = max(max_abs, float(diff.max())) if diff.size else max_abs
        if atol == 0 and rtol == 0:
            within &= bool(np.array_equal(a, b, equal_nan=True))  # +0 and -0 are equal values
        else:
            within &= bool(np.all(diff <= atol + rtol * np.abs(a)))
    if max_abs == 0:
        return Difference(0.0, 0.0, compared, within)
    scale = magnitude(source)
    return Difference(max_abs, max_abs / scale if scale > 0 else float("inf"), compared, within)


def _as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)
