"""What a transfer did: the plan, where the output is, and what it cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .plan import MAIN_SOURCE, TRANSFERRED, Plan

__all__ = ["Report", "unchecked_words", "positional_words", "human_bytes"]


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
    # tensors the stream read only in part: a vocabulary remap reads the surviving rows (and the new rows'
    # initial values); a CRC32C covers a whole tensor, theirs were not verified. {"checkpoint": "source",
    # "source": its name, "key"} or {"checkpoint": "template", "key"}
    unchecked: tuple[dict[str, str], ...] = ()
    # the parity certificate of the output (a warmstart.verification.Certificate) when the transfer verified it
    certificate: Any = None

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
            "unchecked": list(self.unchecked),
            "verify": None if self.certificate is None else self.certificate.to_json(),
        })
        return doc


def unchecked_words(unchecked: list[dict[str, str]]) -> str:
    """What the ``unchecked`` records of a report mean, in words for a summary: ``source 'emb'`` (the main
    source), ``source run_b 'emb'`` (a named one), ``template 'emb'``."""
    names = ", ".join(_place(u) + f" {u['key']!r}" for u in unchecked[:3]) + (", ..." if len(unchecked) > 3 else "")
    if len(unchecked) == 1:
        return f"1 tensor read in part: its checksum could not be verified ({names})"
    return f"{len(unchecked)} tensors read in part: their checksums could not be verified ({names})"


def _place(record: dict[str, str]) -> str:
    if record["checkpoint"] == "source" and record.get("source", MAIN_SOURCE) != MAIN_SOURCE:
        return f"source {record['source']}"
    return record["checkpoint"]


def human_bytes(n: int | None) -> str:
    """``n`` bytes in binary units, one decimal (``1.5 MiB``, ``512 B``); ``-`` for unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
def positional_words(doc: dict[str, Any], shown: int = 3) -> str | None:
    """One line on the matches of a plan document (``Plan.to_json()``, a transfer's ``--json``) that rest on
    position, with the first few; None when every match rests on names or rules."""
    rows = [v for v in doc.get("variables", []) if v.get("positional") and v.get("action") in TRANSFERRED]
    if not rows:
        return None
    pairs = ", ".join(f"{r['target']!r} <- {r['source']!r}" for r in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return (f"{len(rows)} variable(s) matched by position, not by name ({pairs}{more}): right only if no layer "
            "was inserted or removed before them. Name the layers, or plan from a source that has layer names")
