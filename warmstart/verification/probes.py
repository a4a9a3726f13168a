"""Probe inputs: seeded values drawn from an input's spec (shape, dtype, the range of integer inputs).

The same probe feeds the source and the target of a comparison. A probe depends only on the seed, the name of
what it feeds and its spec, so a certificate can be repeated. Floats are standard normal; integers (token ids)
uniform in ``[low, high)``, the range an input takes (below an Embedding's vocabulary); booleans fair coins.
Dimensions an input leaves open take :data:`OPEN_DIM`, an open batch (the first) the number of probes. NumPy only.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

__all__ = ["InputSpec", "draw", "OPEN_DIM", "merge_specs", "with_range", "arrays_for"]

OPEN_DIM = 8  # the size of a dimension an input spec leaves open (a sequence's length)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input: its name, shape (None: open; the first dimension is the batch), dtype name and, for integer
    inputs, the range ``[low, high)`` of valid values (None: unknown, so no probe can be drawn)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    low: int | None = None
    high: int | None = None

    @property
    def integer(self) -> bool:
        return np.dtype(self.dtype).kind in "iu" if self.dtype not in ("bfloat16", "string") else False

    def problem(self) -> str | None:
        """Why no probe can be drawn for it, or None."""
        if self.dtype == "string":
            return f"input {self.name!r} takes strings"
        if self.integer and (self.low is None or self.high is None):
            return (f"integer input {self.name!r} of unknown range (no Embedding reads it): give its values in an "
                    "npz file (verify: npz) or a range")
        if self.integer and self.high <= self.low:  # type: ignore[operator]
            return f"integer input {self.name!r} has an empty range [{self.low}, {self.high})"
        return None


def draw(spec: InputSpec, probes: int, seed: int, salt: str = "") -> np.ndarray:
    """``probes`` values of ``spec`` (the first dimension is the batch), from ``seed``, the spec's name and ``salt``.
    Raises :class:`UsageError` when none can be drawn (:meth:`InputSpec.problem`)."""
    problem = spec.problem()
    if problem:
        raise UsageError(problem)
    shape = tuple(d if d is not None else probes if i == 0 else OPEN_DIM for i, d in enumerate(spec.shape))
    rng = np.random.default_rng([seed, zlib.crc32(f"{salt}/{spec.name}".encode())])
    if spec.integer:
        return rng.integers(spec.low, spec.high, size=shape).astype(spec.dtype)  # type: ignore[arg-type]
    if spec.dtype == "bool":
        return rng.random(shape) < 0.5
    value = rng.standard_normal(shape)
    if spec.dtype == "bfloat16":
        import ml_dtypes

        return value.astype(ml_dtypes.bfloat16)
    return value.astype(spec.dtype)


def merge_specs(a: InputSpec, b: InputSpec, name: str) -> InputSpec:
    """One spec both inputs take (a source placeholder and a target input fed the same probe): known dimensions
    must agree; the integer range is the narrower. Raises :class:`UsageError` when they cannot."""
    if len(a.shape) != len(b.shape):
        raise UsageError(f"{name}: the source's input {a.name!r} has rank {len(a.shape)}, the target's {b.name!r} "
                         f"rank {len(b.shape)}: they cannot take the same probes")
    shape = []
    for x, y in zip(a.shape, b.shape):
        if x is not None and y is not None and x != y:
            raise UsageError(f"{name}: the source's input {a.name!r} is {list(a.shape)}, the target's {b.name!r} "
                             f"{list(b.shape)}: they cannot take the same probes")
        shape.append(x if x is not None else y)
    lows = [v for v in (a.low, b.low) if v is not None]
    highs = [v for v in (a.high, b.high) if v is not None]
    return InputSpec(name, tuple(shape), b.dtype, max(lows) if lows else None, min(highs) if highs else None)


def with_range(spec: InputSpec, given: tuple[float, float] | None) -> InputSpec:
    """``spec`` with the declared integer range, when one is given."""
    if given is None:
        return spec
    return InputSpec(spec.name, spec.shape, spec.dtype, int(given[0]), int(given[1]))


def arrays_for(specs: Mapping[str, InputSpec], probes: int, seed: int, salt: str) -> dict[str, np.ndarray]:
    """A probe per spec, by name."""
    return {name: draw(spec, probes, seed, salt) for name, spec in specs.items()}
