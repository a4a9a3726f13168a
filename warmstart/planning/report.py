"""What a transfer did: the plan, where the output is, and what it cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .plan import Plan

__all__ = ["Report", "unchecked_words"]


@dataclass(frozen=True)
class Report:
    """The result of :func:`warmstart.transfer`, :func:`warmstart.copy_variables` or
    :func:`warmstart.copy_weights`. ``output`` is ``None`` for live-object copies."""

    plan: Plan
    strategy: str
    output: str | None = None
    checkpoint: str | None = None
    manifest: str | None = None
    keras_weights: str | None = None
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    # tensors the stream read only in part, as ("source" | "template", key): a vocabulary remap reads the
    # surviving rows (and the new rows' initial values); a CRC32C covers a whole tensor, theirs were not verified
    unchecked: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.plan.ok

    def to_json(self) -> dict[str, Any]:
        doc = self.plan.to_json()
        doc.update({
            "strategy": self.strategy,
            "output": self.output,
            "checkpoint": self.checkpoint,
            "manifest": self.manifest,
            "keras_weights": self.keras_weights,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
            "unchecked": [{"checkpoint": where, "key": key} for where, key in self.unchecked],
        })
        return doc


def unchecked_words(unchecked: list[dict[str, str]]) -> str:
    """What the ``unchecked`` records of a report (``{"checkpoint", "key"}``) mean, in words for a summary."""
    names = ", ".join(f"{u['checkpoint']} {u['key']!r}" for u in unchecked[:3]) + (", ..." if len(unchecked) > 3 else "")
    if len(unchecked) == 1:
        return f"1 tensor read in part: its checksum could not be verified ({names})"
    return f"{len(unchecked)} tensors read in part: their checksums could not be verified ({names})"
