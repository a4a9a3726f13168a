"""Block operations for migrations (issue 11): a target variable made from one source variable, or several
concatenated, by an ordered list of ops (slice, split, permute equal blocks, transpose, reshape, add a
constant). Declared in the rules (:class:`BlockOp`, :class:`Concat` in a ``transforms:`` entry); planned
here from shapes alone (:func:`plan_blocks` computes the resulting shape, or says in words why it cannot be
made); a plan's :class:`Blocks` record computes the value from whole source values (:meth:`Blocks.apply`),
so the shapes the plan checked and the values the strategies write come from the same definitions.

A TF1 ``LSTMCell`` into a Keras ``LSTM``: ``kernel`` = rows ``0:input`` of the fused kernel, gate blocks
``i, j, f, o`` reordered to ``i, f, c(=j), o`` (``permute: {axis: 1, blocks: 4, order: [0, 2, 1, 3]}``);
``recurrent_kernel`` = the remaining rows, reordered alike; ``bias`` reordered, ``+1.0`` on its ``f`` block
(TF1's ``forget_bias``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ..formats.dtypes import by_name
from .block_plan import Blocks, BlockSource, disjoint
from .onekey import OneKey

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BlockOp", "BlockSource", "Blocks", "Concat", "disjoint", "plan_blocks"]

# defer_build: a model's validator is built when first used (within the one of the Rules that holds it), not when
# the module is imported: a transfer builds one validator, not one per model (planning/rules.py).
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Op(BaseModel):
    """One block op: its shape rule (:meth:`shape`: the output shape, or why it cannot be applied, in words), its
    NumPy step (:meth:`apply`, on a value whose shape passed :meth:`shape`) and its words (:meth:`describe`)."""

    model_config = _FROZEN

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | str:
        raise NotImplementedError

    def apply(self, value: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self, shape: tuple[int, ...]) -> str:
        raise NotImplementedError


class _Range(_Op):
    """An op that keeps indices ``start:stop`` of one axis (a slice, a split's part)."""

    axis: int = Field(0, ge=0)

    def bounds(self, shape: tuple[int, ...]) -> tuple[int, int] | str:
        raise NotImplementedError

    def shape(self, shape):
        bounds = self.bounds(shape)
        return bounds if isinstance(bounds, str) else _with_axis(shape, self.axis, bounds[1] - bounds[0])

    def apply(self, value):
        start, stop = self.bounds(value.shape)  # type: ignore[misc]
        region = [slice(None)] * value.ndim
        region[self.axis] = slice(start, stop)
        return value[tuple(region)]

    def narrowed(self, region: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The source box after this op leads the ops (offsets relative to the box so far)."""
        bounds = self.bounds(tuple(stop - start for start, stop in region))
        assert not isinstance(bounds, str)  # the shape check before passed
        base = region[self.axis][0]
        return [(base + bounds[0], base + bounds[1]) if d == self.axis else r for d, r in enumerate(region)]

    def describe(self, shape):
        start, stop = self.bounds(shape)  # type: ignore[misc]
        return f"{_axis_word(self.axis, len(shape))} {start}:{stop}"


class Slice(_Range):
    """Indices ``start:stop`` along ``axis`` (``stop`` omitted: to the end); out of range is an error."""

    start: int = Field(0, ge=0)
    stop: int | None = Field(None, ge=0)

    def bounds(self, shape):
        bad = _axis_ok(shape, self.axis)
        if bad:
            return bad
        stop = shape[self.axis] if self.stop is None else self.stop
        if not self.start < stop <= shape[self.axis]:
            return (f"{self.start}:{stop} is out of range for axis {self.axis} of size {shape[self.axis]} "
                    "(0 <= start < stop <= size)")
        return self.start, stop


class Split(_Range):
    """Part ``index`` of ``axis`` cut into ``parts``: equal parts (an int), or parts of the sizes listed."""

    parts: int | list[int] = Field(description="Number of equal parts, or the size of each part.")
    index: int = Field(ge=0, description="Which part (0-based).")

    def bounds(self, shape):
        bad = _axis_ok(shape, self.axis)
        if bad:
            return bad
        n = shape[self.axis]
        if isinstance(self.parts, int):
            if self.parts < 1 or n % self.parts:
                return f"axis {self.axis} of size {n} does not split into {self.parts} equal parts"
            sizes = [n // self.parts] * self.parts
        else:
            sizes = self.parts
            if any(s < 1 for s in sizes) or sum(sizes) != n:
                return f"part sizes {sizes} do not add up to axis {self.axis}'s size {n}"
        if self.index >= len(sizes):
            return f"part {self.index} of {len(sizes)} parts"
        start = sum(sizes[: self.index])
        return start, start + sizes[self.index]

    def describe(self, shape):
        count = self.parts if isinstance(self.parts, int) else len(self.parts)
        return f"{super().describe(shape)} (part {self.index} of {count})"


class Permute(_Op):
    """``axis`` cut into ``blocks`` equal blocks; output block ``k`` is input block ``order[k]``."""

    axis: int = Field(0, ge=0)
    blocks: int = Field(ge=1)
    order: list[int]

    def shape(self, shape):
        bad = _axis_ok(shape, self.axis)
        if bad:
            return bad
        if shape[self.axis] % self.blocks:
            return f"axis {self.axis} of size {shape[self.axis]} is not divisible into {self.blocks} blocks"
        if sorted(self.order) != list(range(self.blocks)):
            return f"order {self.order} is not a permutation of 0..{self.blocks - 1}"
        return shape

    def apply(self, value):
        import numpy as np

        blocks = np.split(value, self.blocks, axis=self.axis)
        return np.concatenate([blocks[k] for k in self.order], axis=self.axis)

    def describe(self, shape):
        return f"{self.blocks} blocks along axis {self.axis} reordered {','.join(map(str, self.order))}"


class Transpose(_Op):
    """Axes reordered as ``perm`` (default: reversed), as ``numpy.transpose``."""

    perm: list[int] | None = None

    def shape(self, shape):
        perm = list(range(len(shape)))[::-1] if self.perm is None else self.perm
        if sorted(perm) != list(range(len(shape))):
            return f"perm {perm} is not a permutation of the {len(shape)} axes"
        return tuple(shape[p] for p in perm)

    def apply(self, value):
        import numpy as np

        return np.transpose(value, self.perm)

    def describe(self, shape):
        return "transposed" + ("" if self.perm is None else f" ({','.join(map(str, self.perm))})")


class Reshape(_Op):
    """The same elements in row-major order, in ``shape`` (one ``-1`` allowed: inferred)."""

    shape_: list[int] = Field(alias="shape")
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, populate_by_name=True,
                              serialize_by_alias=True)

    def shape(self, shape):  # type: ignore[override]
        import numpy as np

        total = int(np.prod(shape, dtype=np.int64))
        wanted = self.shape_
        known = [n for n in wanted if n != -1]
        if wanted.count(-1) > 1 or any(n < 0 for n in known):
            return f"shape {wanted}: sizes must be >= 0, at most one -1"
        size = int(np.prod(known, dtype=np.int64))
        if wanted.count(-1):
            if size == 0 or total % size:
                return f"cannot infer the -1 of {wanted} from {total} elements"
            return tuple(total // size if n == -1 else n for n in wanted)
        if size != total:
            return f"{wanted} holds {size} elements, the value {total}"
        return tuple(wanted)

    def apply(self, value):
        import numpy as np

        return np.reshape(value, self.shape_)

    def describe(self, shape):
        return f"reshaped to {self.shape_}"


class Add(_Op):
    """``value`` added to every element, or only to block ``block`` of ``axis`` cut into ``blocks`` equal blocks
    (TF1's ``forget_bias``: 1.0 on the forget gate's block of an LSTM bias)."""

    value: float
    axis: int = Field(0, ge=0)
    blocks: int = Field(1, ge=1)
    block: int | None = Field(None, ge=0, description="With blocks: which block (default: all of them).")

    def problem(self, dtype: str) -> str | None:
        """Why ``value`` cannot be added exactly to a ``dtype`` tensor (strings, booleans, a fraction to integers)."""
        import numpy as np

        kind = np.dtype(by_name(dtype).numpy or object).kind
        if kind in "OSUb":
            return f"the source holds {dtype} values"
        if kind in "iu" and not float(self.value).is_integer():
            return f"{self.value} added to {dtype} values would be truncated"
        return None

    def shape(self, shape):
        bad = _axis_ok(shape, self.axis) if self.blocks > 1 or self.block is not None else None
        if bad:
            return bad
        if self.blocks > 1 and shape[self.axis] % self.blocks:
            return f"axis {self.axis} of size {shape[self.axis]} is not divisible into {self.blocks} blocks"
        if self.block is not None and self.block >= self.blocks:
            return f"block {self.block} of {self.blocks} blocks"
        return shape

    def apply(self, value):
        import numpy as np

        out = np.array(value, copy=True)
        if self.block is None:
            out += np.asarray(self.value).astype(out.dtype)
            return out
        size = out.shape[self.axis] // self.blocks
        region = [slice(None)] * out.ndim
        region[self.axis] = slice(self.block * size, (self.block + 1) * size)
        out[tuple(region)] += np.asarray(self.value).astype(out.dtype)
        return out

    def describe(self, shape):
        where = "" if self.block is None else f" on block {self.block} of {self.blocks} along axis {self.axis}"
        return f"{self.value:+g}{where}"


class BlockOp(OneKey):
    """One op of a transform's ``ops:`` list, written as a mapping with one key (``{slice: {...}}``)."""

    WHAT = "an op"
    slice: Slice | None = None
    split: Split | None = None
    permute: Permute | None = None
    transpose: Transpose | None = None
    reshape: Reshape | None = None
    add: Add | None = None

    @property
    def args(self) -> _Op:
        """The op itself (its shape rule, NumPy step and words)."""
        return getattr(self, self.kind)


class Concat(BaseModel):
    """The target is ``sources`` (source variable names) concatenated along ``axis``, then ``ops``."""

    model_config = _FROZEN
    axis: int = Field(0, ge=0)
    sources: list[str] = Field(min_length=2, description="Source variable names, in order.")


def plan_blocks(ops: list[BlockOp], sources: tuple[BlockSource, ...], concat_axis: int | None) -> Blocks | str:
    """The :class:`Blocks` of ``ops`` over ``sources`` (shapes only), or why it cannot be made, in words."""
    if concat_axis is None:
        shape = sources[0].shape
        what = f"{sources[0].name} {list(shape)}"
    else:
        joined = _concat_shape([s.shape for s in sources], concat_axis)
        if isinstance(joined, str):
            return f"concat: {joined}"
        shape = joined
        what = f"concatenation along axis {concat_axis} of " + ", ".join(f"{s.name} {list(s.shape)}" for s in sources)
    dtypes = {s.dtype for s in sources}
    if len(dtypes) > 1:
        return "concat: the sources have different dtypes (" + ", ".join(f"{s.name} {s.dtype}" for s in sources) + ")"
    for i, op in enumerate(ops):
        problem = op.args.problem(next(iter(dtypes))) if isinstance(op.args, Add) else None
        if problem:
            return f"ops[{i}] add: {problem}"
    region = [(0, n) for n in shape] if concat_axis is None else None
    steps, leading = [], True
    for i, op in enumerate(ops):
        new_shape = op.args.shape(shape)
        if isinstance(new_shape, str):
            return f"ops[{i}] {op.kind}: {new_shape} (input shape {list(shape)})"
        leading = leading and isinstance(op.args, _Range)
        if region is not None and leading:  # later ops only rearrange or select within the box read so far
            region = op.args.narrowed(region)
        steps.append(op.args.describe(shape))
        shape = new_shape
    if ops and ops[0].kind in ("slice", "split"):  # "rows 0:8 of rnn/lstm_cell/kernel [24, 64], ..."
        steps[0] = f"{steps[0]} of {what}"
    else:
        steps.insert(0, what)
    return Blocks(sources, concat_axis, tuple(ops), shape, None if region is None else tuple(region),
                  {"reason": f"{', '.join(steps)} -> {list(shape)}"})


def _concat_shape(shapes: list[tuple[int, ...]], axis: int) -> tuple[int, ...] | str:
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes) or axis >= rank:
        return (f"the sources' shapes {[list(s) for s in shapes]} cannot be joined along axis {axis} "
                "(ranks differ or too low)")
    for d in range(rank):
        if d != axis and len({s[d] for s in shapes}) > 1:
            return f"the sources' shapes {[list(s) for s in shapes]} differ off axis {axis}"
    return tuple(sum(s[axis] for s in shapes) if d == axis else shapes[0][d] for d in range(rank))


def _axis_ok(shape: tuple[int, ...], axis: int) -> str | None:
    return None if axis < len(shape) else f"axis {axis} of a rank-{len(shape)} value"


def _with_axis(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    return shape[:axis] + (size,) + shape[axis + 1 :]


def _axis_word(axis: int, rank: int) -> str:
    if rank == 2:
        return "rows" if axis == 0 else "columns"
    return "entries" if rank == 1 else f"axis {axis}"
