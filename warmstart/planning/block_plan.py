"""What a plan holds for a block transform (:class:`Blocks`) and the sources it reads (:class:`BlockSource`):
plain records, without the rules' models (:mod:`warmstart.planning.blocks` declares and plans the ops), so a plan
and the strategies that execute it do not import pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BlockSource", "Blocks", "disjoint"]


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
    ops: tuple[Any, ...]  # planning/blocks.py's BlockOp models, applied in order
    shape: tuple[int, ...]
    region: tuple[tuple[int, int], ...] | None
    summary: dict[str, Any] = field(default_factory=dict)
    kind: str = "blocks"
    needs_initial: bool = False  # every element comes from the sources

    def apply(self, values: list[np.ndarray]) -> np.ndarray:
        """The transform's value from the sources' whole values (in the order of ``sources``)."""
        import numpy as np

        value = values[0] if self.concat_axis is None else np.concatenate(values, axis=self.concat_axis)
        for op in self.ops:
            value = op.args.apply(value)
        return value

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sources": [s.to_json() for s in self.sources], "concat_axis": self.concat_axis,
                "ops": [op.model_dump(mode="json", exclude_none=True) for op in self.ops], **self.summary}


def disjoint(a: Blocks, b: Blocks) -> bool:
    """True when ``a`` and ``b`` read disjoint regions of the same single source."""
    if a.region is None or b.region is None:
        return False
    return any(sa >= eb or sb >= ea for (sa, ea), (sb, eb) in zip(a.region, b.region))
