"""The plan as a record: for every target variable, what it will be filled with and why (:class:`PlanEntry`),
and the whole decision with its counts, coverage and reporting (:class:`Plan`). Made by
:func:`warmstart.planning.matching.make_plan`; strategies execute it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args

from .inputs import READ_BY_TRANSFER, PinnedInput

if TYPE_CHECKING:  # the records a plan holds; importing them costs NumPy and pydantic (the CLI's help needs neither)
    from ..tables import VariableTable
    from .block_plan import Blocks
    from .plain_rules import ParsedRules
    from .transforms import Remap

__all__ = ["Action", "PlanEntry", "Plan", "TRANSFERRED", "DIRECT", "COUNTED", "Strategy", "STRATEGIES", "MAIN_SOURCE"]

#: The name of the source given as SOURCE (the ``source`` argument): the default of every target variable.
MAIN_SOURCE = "main"

Action = Literal["copy", "cast", "remap", "init", "skip", "error"]
#: The actions that fill a target variable from a source (the others keep its initial value or fail).
TRANSFERRED: frozenset[str] = frozenset({"copy", "cast", "remap"})
#: The transferred actions whose value is the source tensor itself, converted at most (no transform).
DIRECT: frozenset[str] = frozenset({"copy", "cast"})
#: The actions every plan counts (``remap`` is counted when a plan has one).
COUNTED: tuple[str, ...] = ("copy", "cast", "init", "skip", "error")
#: How a plan is executed: the one list of strategy names (CLI choices, the flow's form, the engine).
Strategy = Literal["auto", "stream", "restore", "assign"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """What happens to one target variable.

    ``copy``: the source value as is; ``cast``: the source value converted to the target dtype;
    ``init``: the target keeps its initial value because the rules say so; ``skip``: a source
    exists but does not fit and the rules say to keep the initial value; ``error``: the rules
    are violated. Future per-variable transforms extend this record, not the actions' meaning.
    """

    target: str
    source: str | None
    action: Action
    reason: str
    shape: tuple[int | None, ...]
    dtype: str
    source_shape: tuple[int, ...] | None = None
    source_dtype: str | None = None
    target_key: str = ""
    source_key: str | None = None
    num_elements: int = 0
    positional: bool = False  # the match rests on position in the source or the target (see Variable)
    remap: Remap | Blocks | None = field(default=None, compare=False)  # action remap: how the value is made
    from_source: str | None = None  # the name of the source holding ``source`` (``main``: the SOURCE argument)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source variable the entry reads: its ``source``, and a concat's other sources."""
        if self.blocks is not None:
            return tuple(s.name for s in self.blocks.sources)
        return () if self.source is None else (self.source,)

    @property
    def blocks(self) -> Blocks | None:
        """The block transform that makes the value (``remap`` of kind ``blocks``), or None."""
        return self.remap if self.remap is not None and self.remap.kind == "blocks" else None  # type: ignore[return-value]

    @property
    def cast(self) -> bool:
        """The value changes dtype on the way (a ``cast``, or a ``remap`` between dtypes)."""
        return self.action == "cast" or (self.action == "remap" and self.source_dtype != self.dtype)

    def to_json(self) -> dict[str, Any]:
        out = {
            "target": self.target,
            "source": self.source,
            "from": self.from_source,
            "action": self.action,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "source_shape": None if self.source_shape is None else list(self.source_shape),
            "source_dtype": self.source_dtype,
            "reason": self.reason,
            "target_key": self.target_key,
            "source_key": self.source_key,
        }
        if self.positional:
            out["positional"] = True
        if self.remap is not None:
            out["remap"] = self.remap.to_json()
        return out


@dataclass(frozen=True)
class Plan:
    """The decision for every target variable, plus what the rules got wrong as a whole."""

    source: VariableTable
    target: VariableTable
    rules: ParsedRules
    entries: tuple[PlanEntry, ...]
    unused_source: tuple[str, ...]
    rule_errors: tuple[str, ...]
    coverage: float
    counts: dict[str, int] = field(init=False)
    sources: Mapping[str, VariableTable] = field(default_factory=dict)  # every source by name; default: main
    inputs: tuple[PinnedInput, ...] = ()  # what it was made from, pinned by version (warmstart.pipeline pins them)
    strategy: Strategy = "auto"  # the strategy the target's table was made for (restore/assign: the model is built)
    hint: str | None = None  # what would make a failed plan work, when the planner can tell (match: structure)

    def __post_init__(self):
        if not self.sources:
            object.__setattr__(self, "sources", {MAIN_SOURCE: self.source})
        counts = {a: 0 for a in COUNTED}  # "remap" only when there is one
        for e in self.entries:
            counts[e.action] = counts.get(e.action, 0) + 1
        object.__setattr__(self, "counts", counts)

    @property
    def ok(self) -> bool:
        return not self.rule_errors and self.counts["error"] == 0

    @cached_property
    def digest(self) -> str:
        """SHA-256 over the rules, every entry and the pinned inputs (their exact objects and versions): equal
        digests, the same transfer of the same bytes."""
        doc = {"rules": self.rules.model_dump(mode="json"), "target": self.target.origin, "strategy": self.strategy,
               "entries": [e.to_json() for e in self.entries],
               "inputs": [{k: v for k, v in i.to_json().items() if k != "given"} for i in self.inputs]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def pinned(self, role: str | None = None, name: str | None = None) -> tuple[PinnedInput, ...]:
        """The inputs of ``role`` (and ``name``), or those a transfer reads again (sources and target) when
        ``role`` is None."""
        return tuple(i for i in self.inputs if (i.role in READ_BY_TRANSFER if role is None else i.role == role)
                     and (name is None or i.name == name))

    @property
    def transferred(self) -> tuple[PlanEntry, ...]:
        return tuple(e for e in self.entries if e.action in TRANSFERRED)

    @property
    def transferred_bytes(self) -> int:
        total = 0
        for e in self.transferred:
            table = self.sources[e.from_source or MAIN_SOURCE]
            total += sum(table[name].nbytes or 0 for name in e.sources)
        return total

    def source_keys(self) -> dict[str, list[str]]:
        """The source tensors a transfer of this plan reads, by source name (``main``: the source): every
        transferred entry's, and a concat's other sources (in the same source)."""
        keys: dict[str, set[str]] = {}
        for e in self.transferred:
            found = keys.setdefault(e.from_source or MAIN_SOURCE, set())
            if e.source_key is not None:
                found.add(e.source_key)
            if e.blocks is not None:
                found.update(s.key for s in e.blocks.sources)
        return {name: sorted(found) for name, found in keys.items()}

    def unused_in(self, name: str) -> tuple[str, ...]:
        """The variables of source ``name`` that fill no target variable."""
        if name == MAIN_SOURCE:
            return self.unused_source
        matched = {n for e in self.entries if e.from_source == name for n in e.sources}
        return tuple(n for n in self.sources[name] if n not in matched)

    def coverage_by_source(self) -> dict[str, float]:
        """The fraction of the target's parameters (by element count) each source fills."""
        total = sum(v.num_elements or 0 for v in self.target.variables)
        filled = {name: 0 for name in self.sources}
        for e in self.transferred:
            filled[e.from_source or MAIN_SOURCE] += e.num_elements
        return {name: (n / total if total else 0.0) for name, n in filled.items()}

    def sources_json(self) -> dict[str, Any]:
        """Per source: where it is, what it fills (variables, parameters, coverage) and its unused variables."""
        coverage = self.coverage_by_source()
        out = {}
        for name, table in self.sources.items():
            filled = [e for e in self.transferred if (e.from_source or MAIN_SOURCE) == name]
            out[name] = {"url": table.origin, "kind": table.kind, "variables": len(filled),
                         "parameters": sum(e.num_elements for e in filled), "coverage": coverage[name],
                         "unused": list(self.unused_in(name))}
        return out

    @property
    def positional(self) -> tuple[PlanEntry, ...]:
        """Transferred entries whose match rests on position: right only if no layer was inserted or
        removed before them. Name the layers (or give the source's structure) to match by name."""
        return tuple(e for e in self.transferred if e.positional)

    def problems(self) -> list[str]:
        """Every reason the plan fails, one line each."""
        out = [f"target {e.target!r}: {e.reason}" for e in self.entries if e.action == "error"]
        return out + list(self.rule_errors)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{len(self.entries)} target variables: {c['copy']} copy, {c['cast']} cast, "
            + (f"{c['remap']} remap, " if "remap" in c else "") + f"{c['init']} init, "
            f"{c['skip']} skip, {c['error']} error; {len(self.unused_source)} source variables unused; "
            f"coverage {self.coverage:.1%}" + (f"; {len(self.positional)} matched by position, not by name"
                                               if self.positional else "")
            + ("; by source: " + ", ".join(f"{n} {c:.1%}" for n, c in self.coverage_by_source().items())
               if len(self.sources) > 1 else "")
        )

    def failure_message(self, where: str | None = "--json or Plan.problems() lists all") -> str:
        """One message: how many problems, the first one, and ``where`` the full list is (None: the reader has it
        already, a table or a JSON document listing them all), and the hint."""
        problems = self.problems()
        if not problems:
            return ""
        more = f" (and {len(problems) - 1} more{f'; {where}' if where else ''})" if len(problems) > 1 else ""
        hint = f". Note: {self.hint}" if self.hint else ""
        return f"the plan does not satisfy the rules: {len(problems)} problem(s). First: {problems[0]}{more}{hint}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failed",
            "source": self.source.origin,
            "target": self.target.origin,
            "variables": [e.to_json() for e in self.entries],
            "unused_source": list(self.unused_source),
            "errors": self.problems(),
            "counts": dict(self.counts),
            "positional": len(self.positional),
            **({"hint": self.hint} if self.hint else {}),
            "coverage": self.coverage,
            "sources": self.sources_json(),
            "transferred_bytes": self.transferred_bytes,
            "rules": self.rules.model_dump(mode="json"),
            "digest": self.digest,
            "inputs": [i.to_json() for i in self.inputs],
        }
