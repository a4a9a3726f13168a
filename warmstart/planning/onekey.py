"""Rules entries written as a mapping with one key naming what they are (``{slice: {...}}``,
``{random_uniform: {...}}``): a block op, an initializer."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_serializer

__all__ = ["OneKey"]


class OneKey(BaseModel):
    """Exactly one of the fields named in ``KINDS`` is given; it is dumped alone, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KINDS: ClassVar[tuple[str, ...]] = ()
    WHAT: ClassVar[str] = "an entry"  # for the message: "an op is one of ..."

    def model_post_init(self, _context: Any) -> None:
        given = [name for name in self.KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"{self.WHAT} is one of {', '.join(self.KINDS)}; received {len(given)} "
                             f"({', '.join(given) or 'none'})")

    @model_serializer(mode="wrap")
    def _only_its_kind(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}  # {slice: {...}}, as written

    @property
    def kind(self) -> str:
        return next(name for name in self.KINDS if getattr(self, name) is not None)
