"""Rules entries written as a mapping with one key naming what they are (``{slice: {...}}``,
``{random_uniform: {...}}``): a block op, an initializer."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_serializer

__all__ = ["OneKey"]


class OneKey(BaseModel):
    """Exactly one of its fields (each optional, one per kind) is given; it is dumped alone, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    WHAT: ClassVar[str] = "an entry"  # for the message: "an op is one of ..."

    def model_post_init(self, _context: Any) -> None:
        kinds = type(self).model_fields
        given = [name for name in kinds if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"{self.WHAT} is one of {', '.join(kinds)}; received {len(given)} "
                             f"({', '.join(given) or 'none'})")

    @model_serializer(mode="wrap")
    def _only_its_kind(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}  # {slice: {...}}, as written

    @property
    def kind(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)
