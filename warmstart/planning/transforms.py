"""Per-variable transforms decided at plan time: a vocabulary remap (TF ``VocabInfo`` semantics) and an
overlap copy. Each becomes a :class:`Remap`: for every axis of the target, which source index fills each
target index (-1: none, the target keeps its initial value, zeros or the mean there). Planning reads the
vocabulary files (one token a line) and no tensor data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputLimitError
from ..formats.dtypes import by_name
from ..storage import VOCAB_BYTES, read_bytes, resolve
from ..tables import Variable, VariableTable
from .block_plan import Blocks, BlockSource
from .lookup import pattern_hint
from .patterns import compile_pattern

if TYPE_CHECKING:
    import numpy as np

    from .initializers import Initializer
    from .plain_rules import ParsedRules
    from .rules import Transform

__all__ = ["Remap", "TransformMatcher", "plan_block_transform", "plan_remap"]


@dataclass(frozen=True, eq=False)
class Remap:
    """Target element ``(i, j, ...)`` is source element ``(maps[0][i], maps[1][j], ...)`` when every index is
    ``>= 0``; otherwise ``fill`` ("init": the target's initial value, "zeros", "mean": the mean of the copied
    entries along ``axis``, "initializer": ``initializer``'s values there). ``None`` in ``maps``: the same index
    (that axis has the same size)."""

    kind: str  # "vocab" | "overlap"
    maps: tuple[np.ndarray | None, ...]
    fill: str
    axis: int
    summary: dict[str, Any] = field(default_factory=dict)
    initializer: Initializer | None = None  # with fill "initializer"

    def index(self, dim: int, size: int) -> np.ndarray:
        import numpy as np

        m = self.maps[dim]
        return np.arange(size, dtype=np.int64) if m is None else m

    @property
    def needs_initial(self) -> bool:
        return self.fill == "init" and any(m is not None and bool((m < 0).any()) for m in self.maps)

    def to_json(self) -> dict[str, Any]:
        init = {} if self.initializer is None else {"initializer": self.initializer.model_dump(mode="json")}
        return {"kind": self.kind, "axis": self.axis, "fill": self.fill, **init, **self.summary}


class TransformMatcher:
    """Finds the transform of a target variable (by its name or an alias; two matching: ambiguous) and
    remembers which were used."""

    def __init__(self, rules: ParsedRules):
        self.transforms = [(t, compile_pattern(t.target)) for t in rules.transforms]
        self.used: set[int] = set()

    def find(self, target: Variable) -> tuple[int, Transform, str] | tuple[None, None, None] | str:
        """(index, transform, the target's name or alias it matched), none, or why it is ambiguous."""
        hits = []
        for i, (_, rx) in enumerate(self.transforms):
            key = next((k for k in (target.name, *target.aliases) if rx.fullmatch(k)), None)
            if key is not None:
                hits.append((i, key))
        self.used.update(i for i, _ in hits)
        if len(hits) > 1:
            return f"transforms[{hits[0][0]}] and transforms[{hits[1][0]}] both match it (ambiguous)"
        return (hits[0][0], self.transforms[hits[0][0]][0], hits[0][1]) if hits else (None, None, None)

    def unused_rule_errors(self, target: VariableTable) -> list[str]:
        errors = []
        for i, (t, _) in enumerate(self.transforms):
            if i not in self.used:
                errors.append(f"transforms[{i}] {t.target!r} matches no target variable{pattern_hint(t.target, target)}")
        return errors


def plan_remap(t: Transform, source_shape: tuple[int, ...], target_shape: tuple[int | None, ...],
               storage_options: dict[str, Any] | None = None, dtype: str | None = None) -> Remap | str:
    """The :class:`Remap` of ``t`` between these shapes (for a target of ``dtype``, which an initializer must
    fit), or a reason (in words) why it cannot be made."""
    fill = t.new_values if t.overlap else t.vocab.new_row  # type: ignore[union-attr]
    problem = _fill_problem(fill, dtype)
    if problem:
        return f"{'new_values' if t.overlap else 'new_row'}: {problem}"
    if None in target_shape:
        return f"target shape {list(target_shape)} is not fully known"
    shape = tuple(int(n) for n in target_shape)  # type: ignore[arg-type]
    if len(source_shape) != len(shape) or not shape:
        return f"source rank {len(source_shape)}, target rank {len(shape)}: a transform needs equal ranks >= 1"
    if t.overlap:
        return _overlap(source_shape, shape, t.new_values)
    return _vocab(t, source_shape, shape, storage_options)


def _fill_problem(fill: str | Initializer, dtype: str | None) -> str | None:
    """Why ``fill`` cannot fill a target of ``dtype``, or None."""
    if not isinstance(fill, str):  # an Initializer (transforms are models: read with pydantic)
        return fill.problem(dtype)
    if fill == "mean" and dtype is not None and by_name(dtype).kind not in ("float", "complex"):
        # a mean of integers or booleans would be truncated or made True when stored: not the mean
        return f"mean of the copied rows fills floating-point variables; the target is {dtype} (init, or zeros)"
    return None


def plan_block_transform(t: Transform, first: Variable, target: Variable, source: VariableTable,
                         key: str | None = None) -> Blocks | str:
    """The :class:`Blocks` of ``t`` from ``first`` (the source the entry found) and, for a concat, the other
    sources it names (``key``: the target's name or alias ``t`` matched), checked against the target's shape;
    or a reason (in words) why it cannot be made."""
    found = [first]
    for name in t.source_names(key or target.name)[1:]:
        v = source.get(name) or source.find(name)
        if v is None:
            return f"concat source {name!r} is not in the source"
        found.append(v)
    if None in target.shape or any(None in v.shape for v in found):
        return "shapes not fully known: " + ", ".join(f"{v.name} {list(v.shape)}" for v in (*found, target))
    from .blocks import plan_blocks  # the ops' models: a transform's rules were read by them already

    sources = tuple(BlockSource(v.name, v.key, tuple(v.shape), v.dtype) for v in found)
    blocks = plan_blocks(t.ops, sources, None if t.concat is None else t.concat.axis)
    if isinstance(blocks, str) or blocks.shape == tuple(target.shape):
        return blocks
    return (f"the ops make {list(blocks.shape)} {sources[0].dtype} from "
            + ", ".join(f"{s.name} {list(s.shape)}" for s in sources)
            + f"; the target {target.name} is {list(target.shape)} {target.dtype}")


def _overlap(source_shape: tuple[int, ...], shape: tuple[int, ...], fill: str | Initializer) -> Remap:
    import numpy as np

    maps = []
    for s, n in zip(source_shape, shape):
        if s == n:
            maps.append(None)
        else:
            m = np.full(n, -1, dtype=np.int64)
            m[: min(s, n)] = np.arange(min(s, n))
            maps.append(m)
    region = [min(s, n) for s, n in zip(source_shape, shape)]
    kept = int(np.prod(region))
    total = int(np.prod(shape))
    reason = (f"overlap copy: region {region} of source {list(source_shape)} ({kept} of {total} elements), "
              f"{total - kept} elements: {_fill_words(fill, 'elements')}")
    return _remap("overlap", maps, fill, 0, {"reason": reason, "from_source": kept, "new": total - kept})


def _fill_words(fill: str | Initializer, name: str) -> str:
    if not isinstance(fill, str):
        return fill.describe()
    return {"init": "initial value", "zeros": "zeros", "mean": "mean of the copied " + name}[fill]


def _remap(kind: str, maps: list[np.ndarray | None], fill: str | Initializer, axis: int,
           summary: dict[str, Any]) -> Remap:
    if not isinstance(fill, str):
        return Remap(kind, tuple(maps), "initializer", axis, summary, fill)
    return Remap(kind, tuple(maps), fill, axis, summary)


def _vocab(t: Transform, source_shape: tuple[int, ...], shape: tuple[int, ...], storage_options) -> Remap | str:
    import numpy as np

    v = t.vocab
    assert v is not None
    if v.axis >= len(shape):
        return f"axis {v.axis} of a rank-{len(shape)} variable"
    # A vocabulary's name comes from the rules (untrusted): what is said of a file that does not fit never
    # tells its content or its number of lines (it may be any file the process can read).
    try:
        old, new = _tokens(v.old, storage_options), _tokens(v.new, storage_options)
    except InputLimitError:
        raise  # not a regular file, or too large: an unreadable input (exit 3), not a plan problem
    except (InputError, OSError, ValueError) as exc:
        return f"vocabulary file: {exc}"
    for what, size, tokens, url in (("old", v.old_vocab_size, old, v.old), ("new", v.new_vocab_size, new, v.new)):
        if size > len(tokens):
            return f"{what}_vocab_size {size} is larger than the {what} vocabulary {url}"
    old = old if v.old_vocab_size < 0 else old[: v.old_vocab_size]
    new = new if v.new_vocab_size < 0 else new[: v.new_vocab_size]  # TF reads only that many new tokens
    for what, tokens, url in (("old", old, v.old), ("new", new, v.new)):
        if "" in tokens:  # TF's reader refuses it too: a blank row would take another blank row's values
            return f"the {what} vocabulary {url} has an empty line (not a token; TF refuses such a file too)"
        dup = _first_duplicate(tokens)
        if dup is not None:
            return f"the {what} vocabulary {url} has a token twice (line {dup + 1}: ambiguous)"
    axis, name = v.axis, "rows" if v.axis == 0 else "columns"
    if shape[axis] != len(new) + v.num_oov_buckets:
        return (f"target has {shape[axis]} {name} along axis {axis}, which is not the number of tokens of the new "
                f"vocabulary {v.new} + {v.num_oov_buckets} OOV buckets")
    if source_shape[axis] < len(old):
        return f"source has {source_shape[axis]} {name} along axis {axis}, fewer than the old vocabulary {v.old} has tokens"
    other = [d for d in range(len(shape)) if d != axis and shape[d] != source_shape[d]]
    if other:
        return f"shape {list(source_shape)} in the source, {list(shape)} in the target differ off axis {axis}"
    position = dict(zip(old, range(len(old))))
    m = np.full(shape[axis], -1, dtype=np.int64)
    m[: len(new)] = np.fromiter(map(position.get, new, repeat(-1)), dtype=np.int64, count=len(new))
    maps: list[np.ndarray | None] = [None] * len(shape)
    maps[axis] = m
    copied = int((m >= 0).sum())
    moved = int(((m >= 0) & (m != np.arange(len(m)))).sum())
    reason = (f"vocabulary remap: {copied} of {shape[axis]} {name} from the source ({moved} moved), "
              f"{shape[axis] - copied} new {name}: {_fill_words(v.new_row, name)}"
              + (f" ({v.num_oov_buckets} OOV buckets)" if v.num_oov_buckets else "")
              + f"; {len(old) - copied} old tokens dropped")
    summary = {"reason": reason, "from_source": copied, "new": shape[axis] - copied, "moved": moved,
               "dropped": len(old) - copied, "oov_buckets": v.num_oov_buckets}
    return _remap("vocab", maps, v.new_row, axis, summary)


def _first_duplicate(tokens: tuple[str, ...]) -> int | None:
    """The index of the first token seen before, or None."""
    if len(set(tokens)) == len(tokens):
        return None
    seen: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok in seen:
            return i
        seen.add(tok)
    return None


def _tokens(url: str, storage_options: dict[str, Any] | None) -> tuple[str, ...]:
    """One token a line of the vocabulary file at ``url``: a regular UTF-8 text file within its size limit. Lines
    as TF reads them: each ends at a newline or the file's end and loses one carriage return before it."""
    data = read_bytes(resolve(url, storage_options), VOCAB_BYTES)
    if b"\0" in data:
        raise ValueError(f"{url} is not a text file (it holds NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{url} is not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(line.removesuffix("\r") for line in lines) if "\r" in text else tuple(lines)
