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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..formats.dtypes import by_name
from .onekey import OneKey

__all__ = ["BlockOp", "BlockSource", "Blocks", "Concat", "disjoint", "plan_blocks"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class Slice(BaseModel):
    """Indices ``start:stop`` along ``axis`` (``stop`` omitted: to the end); out of range is an error."""

    model_config = _FROZEN
    axis: int = Field(0, ge=0)
    start: int = Field(0, ge=0)
    stop: int | None = Field(None, ge=0)


class Split(BaseModel):
    """Part ``index`` of ``axis`` cut into ``parts``: equal parts (an int), or parts of the sizes listed."""

    model_config = _FROZEN
    axis: int = Field(0, ge=0)
    parts: int | list[int] = Field(description="Number of equal parts, or the size of each part.")
    index: int = Field(ge=0, description="Which part (0-based).")


class Permute(BaseModel):
    """``axis`` cut into ``blocks`` equal blocks; output block ``k`` is input block ``order[k]``."""

    model_config = _FROZEN
    axis: int = Field(0, ge=0)
    blocks: int = Field(ge=1)
    order: list[int]


class Transpose(BaseModel):
    """Axes reordered as ``perm`` (default: reversed), as ``numpy.transpose``."""

    model_config = _FROZEN
    perm: list[int] | None = None


class Reshape(BaseModel):
    """The same elements in row-major order, in ``shape`` (one ``-1`` allowed: inferred)."""

    model_config = _FROZEN
    shape: list[int]


class Add(BaseModel):
    """``value`` added to every element, or only to block ``block`` of ``axis`` cut into ``blocks`` equal blocks
    (TF1's ``forget_bias``: 1.0 on the forget gate's block of an LSTM bias)."""

    model_config = _FROZEN
    value: float
    axis: int = Field(0, ge=0)
    blocks: int = Field(1, ge=1)
    block: int | None = Field(None, ge=0, description="With blocks: which block (default: all of them).")


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
    def args(self) -> Any:
        return getattr(self, self.kind)


class Concat(BaseModel):
    """The target is ``sources`` (source variable names) concatenated along ``axis``, then ``ops``."""

    model_config = _FROZEN
    axis: int = Field(0, ge=0)
    sources: list[str] = Field(min_length=2, description="Source variable names, in order.")


@dataclass(frozen=True, slots=True)
class BlockSource:
    """A source variable a block transform reads whole: its name, storage key, shape and dtype."""

    name: str
    key: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True, eq=False)
class Blocks:
    """A planned block transform: the value is ``ops`` applied to ``sources`` (concatenated along
    ``concat_axis`` when there are several). ``region``: the box of the single source the value comes
    from (per axis ``(start, stop)``: narrowed by the slices and splits the ops begin with); two targets may
    share a source without ``allow_shared_source`` when their regions are disjoint."""

    sources: tuple[BlockSource, ...]
    concat_axis: int | None
    ops: tuple[BlockOp, ...]
    shape: tuple[int, ...]
    region: tuple[tuple[int, int], ...] | None
    summary: dict[str, Any] = field(default_factory=dict)
    kind: str = "blocks"
    needs_initial: bool = False  # every element comes from the sources

    def apply(self, values: list[np.ndarray]) -> np.ndarray:
        """The transform's value from the sources' whole values (in the order of ``sources``)."""
        value = values[0] if self.concat_axis is None else np.concatenate(values, axis=self.concat_axis)
        for op in self.ops:
            value = _APPLY[op.kind](value, op.args)
        return value

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sources": [s.to_json() for s in self.sources], "concat_axis": self.concat_axis,
                "ops": [op.model_dump(mode="json", exclude_none=True) for op in self.ops], **self.summary}


def disjoint(a: Blocks, b: Blocks) -> bool:
    """True when ``a`` and ``b`` read disjoint regions of the same single source."""
    if a.region is None or b.region is None:
        return False
    return any(sa >= eb or sb >= ea for (sa, ea), (sb, eb) in zip(a.region, b.region))


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
        problem = _add_problem(op, next(iter(dtypes))) if op.kind == "add" else None
        if problem:
            return f"ops[{i}] add: {problem}"
    region = [(0, n) for n in shape] if concat_axis is None else None
    steps, leading = [], True
    for i, op in enumerate(ops):
        new_shape = _SHAPE[op.kind](shape, op.args)
        if isinstance(new_shape, str):
            return f"ops[{i}] {op.kind}: {new_shape} (input shape {list(shape)})"
        leading = leading and op.kind in ("slice", "split")
        if region is not None and leading:  # later ops only rearrange or select within the box read so far
            region = _narrowed(region, op)
        steps.append(_describe(op, shape))
        shape = new_shape
    if ops and ops[0].kind in ("slice", "split"):  # "rows 0:8 of rnn/lstm_cell/kernel [24, 64], ..."
        steps[0] = f"{steps[0]} of {what}"
    else:
        steps.insert(0, what)
    return Blocks(sources, concat_axis, tuple(ops), shape, None if region is None else tuple(region),
                  {"reason": f"{', '.join(steps)} -> {list(shape)}"})


def _add_problem(op: BlockOp, dtype: str) -> str | None:
    """Why ``value`` cannot be added exactly to a ``dtype`` tensor (strings, booleans, a fraction to integers)."""
    kind = np.dtype(by_name(dtype).numpy or object).kind
    if kind in "OSUb":
        return f"the source holds {dtype} values"
    if kind in "iu" and not float(op.args.value).is_integer():
        return f"{op.args.value} added to {dtype} values would be truncated"
    return None


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


def _slice_bounds(shape: tuple[int, ...], op: Slice) -> tuple[int, int] | str:
    bad = _axis_ok(shape, op.axis)
    if bad:
        return bad
    stop = shape[op.axis] if op.stop is None else op.stop
    if not op.start < stop <= shape[op.axis]:
        return (f"{op.start}:{stop} is out of range for axis {op.axis} of size {shape[op.axis]} "
                "(0 <= start < stop <= size)")
    return op.start, stop


def _split_bounds(shape: tuple[int, ...], op: Split) -> tuple[int, int] | str:
    bad = _axis_ok(shape, op.axis)
    if bad:
        return bad
    n = shape[op.axis]
    if isinstance(op.parts, int):
        if op.parts < 1 or n % op.parts:
            return f"axis {op.axis} of size {n} does not split into {op.parts} equal parts"
        sizes = [n // op.parts] * op.parts
    else:
        sizes = op.parts
        if any(s < 1 for s in sizes) or sum(sizes) != n:
            return f"part sizes {sizes} do not add up to axis {op.axis}'s size {n}"
    if op.index >= len(sizes):
        return f"part {op.index} of {len(sizes)} parts"
    start = sum(sizes[: op.index])
    return start, start + sizes[op.index]


def _with_axis(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    return shape[:axis] + (size,) + shape[axis + 1 :]


def _slice_shape(shape, op: Slice):
    bounds = _slice_bounds(shape, op)
    return bounds if isinstance(bounds, str) else _with_axis(shape, op.axis, bounds[1] - bounds[0])


def _split_shape(shape, op: Split):
    bounds = _split_bounds(shape, op)
    return bounds if isinstance(bounds, str) else _with_axis(shape, op.axis, bounds[1] - bounds[0])


def _permute_shape(shape, op: Permute):
    bad = _axis_ok(shape, op.axis)
    if bad:
        return bad
    if shape[op.axis] % op.blocks:
        return f"axis {op.axis} of size {shape[op.axis]} is not divisible into {op.blocks} blocks"
    if sorted(op.order) != list(range(op.blocks)):
        return f"order {op.order} is not a permutation of 0..{op.blocks - 1}"
    return shape


def _transpose_shape(shape, op: Transpose):
    perm = list(range(len(shape)))[::-1] if op.perm is None else op.perm
    if sorted(perm) != list(range(len(shape))):
        return f"perm {perm} is not a permutation of the {len(shape)} axes"
    return tuple(shape[p] for p in perm)


def _reshape_shape(shape, op: Reshape):
    total = int(np.prod(shape, dtype=np.int64))
    known = [n for n in op.shape if n != -1]
    if op.shape.count(-1) > 1 or any(n < 0 for n in known):
        return f"shape {op.shape}: sizes must be >= 0, at most one -1"
    size = int(np.prod(known, dtype=np.int64))
    if op.shape.count(-1):
        if size == 0 or total % size:
            return f"cannot infer the -1 of {op.shape} from {total} elements"
        return tuple(total // size if n == -1 else n for n in op.shape)
    if size != total:
        return f"{op.shape} holds {size} elements, the value {total}"
    return tuple(op.shape)


def _add_shape(shape, op: Add):
    bad = _axis_ok(shape, op.axis) if op.blocks > 1 or op.block is not None else None
    if bad:
        return bad
    if op.blocks > 1 and shape[op.axis] % op.blocks:
        return f"axis {op.axis} of size {shape[op.axis]} is not divisible into {op.blocks} blocks"
    if op.block is not None and op.block >= op.blocks:
        return f"block {op.block} of {op.blocks} blocks"
    return shape


_SHAPE = {"slice": _slice_shape, "split": _split_shape, "permute": _permute_shape, "transpose": _transpose_shape,
          "reshape": _reshape_shape, "add": _add_shape}


def _take(value: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    region = [slice(None)] * value.ndim
    region[axis] = slice(start, stop)
    return value[tuple(region)]


def _apply_slice(value, op: Slice):
    return _take(value, op.axis, *_slice_bounds(value.shape, op))  # type: ignore[misc]


def _apply_split(value, op: Split):
    return _take(value, op.axis, *_split_bounds(value.shape, op))  # type: ignore[misc]


def _apply_permute(value, op: Permute):
    blocks = np.split(value, op.blocks, axis=op.axis)
    return np.concatenate([blocks[k] for k in op.order], axis=op.axis)


def _apply_transpose(value, op: Transpose):
    return np.transpose(value, op.perm)


def _apply_reshape(value, op: Reshape):
    return np.reshape(value, op.shape)


def _apply_add(value, op: Add):
    out = np.array(value, copy=True)
    if op.block is None:
        out += np.asarray(op.value).astype(out.dtype)
        return out
    size = out.shape[op.axis] // op.blocks
    region = [slice(None)] * out.ndim
    region[op.axis] = slice(op.block * size, (op.block + 1) * size)
    out[tuple(region)] += np.asarray(op.value).astype(out.dtype)
    return out


_APPLY = {"slice": _apply_slice, "split": _apply_split, "permute": _apply_permute, "transpose": _apply_transpose,
          "reshape": _apply_reshape, "add": _apply_add}


def _narrowed(region: list[tuple[int, int]], op: BlockOp) -> list[tuple[int, int]]:
    """The source box after a leading slice or split (offsets relative to the box so far)."""
    shape = tuple(stop - start for start, stop in region)
    bounds = (_slice_bounds if op.kind == "slice" else _split_bounds)(shape, op.args)
    assert not isinstance(bounds, str)  # the shape check before passed
    axis, base = op.args.axis, region[op.args.axis][0]
    return [(base + bounds[0], base + bounds[1]) if d == axis else r for d, r in enumerate(region)]


def _axis_word(axis: int, rank: int) -> str:
    if rank == 2:
        return "rows" if axis == 0 else "columns"
    return "entries" if rank == 1 else f"axis {axis}"


def _describe(op: BlockOp, shape: tuple[int, ...]) -> str:
    """The op in words, e.g. ``rows 0:8`` or ``4 blocks along axis 1 reordered 0,2,1,3``."""
    a = op.args
    if op.kind in ("slice", "split"):
        start, stop = (_slice_bounds if op.kind == "slice" else _split_bounds)(shape, a)  # type: ignore[misc]
        part = ""
        if op.kind == "split":
            part = f" (part {a.index} of {a.parts if isinstance(a.parts, int) else len(a.parts)})"
        return f"{_axis_word(a.axis, len(shape))} {start}:{stop}{part}"
    if op.kind == "permute":
        return f"{a.blocks} blocks along axis {a.axis} reordered {','.join(map(str, a.order))}"
    if op.kind == "transpose":
        return "transposed" + ("" if a.perm is None else f" ({','.join(map(str, a.perm))})")
    if op.kind == "reshape":
        return f"reshaped to {a.shape}"
    where = "" if a.block is None else f" on block {a.block} of {a.blocks} along axis {a.axis}"
    return f"{a.value:+g}{where}"
