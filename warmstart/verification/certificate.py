"""The parity certificate as a record: what was compared, how closely, what could not be, and the verdict.

A :class:`Check` is one comparison: a target layer against the source layer it was filled from (``layer``), a
declared pair of outputs (``pair``), or a remapped variable's surviving rows (``rows``). A :class:`NotChecked`
says why a target layer (or a declared comparison) was not compared. The :class:`Certificate` holds them with
the probes, the seed and the digest of the plan it certifies. Pure: no TensorFlow, no NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import UsageError

__all__ = ["Check", "NotChecked", "Certificate", "Verdict", "VerifyMode", "VERIFY_MODES", "verify_mode", "CheckKind"]

CheckKind = Literal["layer", "pair", "rows"]
Verdict = Literal["passed", "failed", "inconclusive"]
#: What a transfer does with its certificate: none, fail the run (nothing published), or publish and report.
VerifyMode = Literal["off", "fail", "warn"]
VERIFY_MODES: tuple[str, ...] = get_args(VerifyMode)
_KIND_WORDS = {"layer": ("layer", "layers"), "pair": ("declared pair", "declared pairs"),
               "rows": ("remapped variable's rows", "remapped variables' rows")}


def verify_mode(value: Any) -> VerifyMode:
    """``True`` -> ``fail``, ``False``/``None`` -> ``off``, or one of :data:`VERIFY_MODES`; else :class:`UsageError`."""
    if value is True:
        return "fail"
    if value is None or value is False:
        return "off"
    if isinstance(value, str) and value in VERIFY_MODES:
        return value  # type: ignore[return-value]
    raise UsageError(f"verify: expected True, False or one of {', '.join(VERIFY_MODES)}. Received: {value!r}")


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison of target outputs with source outputs on the same probes.

    ``max_abs``/``max_rel``: the largest absolute and relative difference over every compared value;
    ``atol``/``rtol``: the tolerance (0 and 0: bit-equal expected); ``cause``: what differs, in words, where
    the certificate can tell (configurations, stale derived state); ``note``: what was compared."""

    kind: CheckKind
    target: str
    source: str
    passed: bool
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    compared: int
    layer_class: str | None = None
    cause: str | None = None
    note: str | None = None
    variables: tuple[str, ...] = ()

    @property
    def bit_equal(self) -> bool:
        return self.atol == 0 and self.rtol == 0

    def tolerance_words(self) -> str:
        return "bit-equal" if self.bit_equal else f"atol {self.atol:.3g}, rtol {self.rtol:.3g}"

    def words(self) -> str:
        """One line: which comparison, how close, against what, and why it failed."""
        what = f"{self.kind} {self.target!r}" + (f" ({self.layer_class})" if self.layer_class else "")
        if self.source != self.target:
            what += f" <- {self.source!r}"
        verdict = "agrees" if self.passed else "differs"
        line = (f"{what} {verdict}: max abs difference {self.max_abs:.3g}, max relative {self.max_rel:.3g} "
                f"({self.tolerance_words()} expected)")
        return line + (f"; {self.cause}" if self.cause else "") + (f" [{self.note}]" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "source": self.source, "class": self.layer_class,
                "passed": self.passed, "max_abs": self.max_abs, "max_rel": self.max_rel, "atol": self.atol,
                "rtol": self.rtol, "bit_equal": self.bit_equal, "compared": self.compared, "cause": self.cause,
                "note": self.note, "variables": list(self.variables)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Check":
        return cls(doc["kind"], doc["target"], doc["source"], doc["passed"], doc["max_abs"], doc["max_rel"],
                   doc["atol"], doc["rtol"], doc["compared"], doc.get("class"), doc.get("cause"), doc.get("note"),
                   tuple(doc.get("variables", ())))


@dataclass(frozen=True, slots=True)
class NotChecked:
    """A target layer (or declared comparison) that was not compared, and why."""

    target: str
    reason: str
    kind: CheckKind = "layer"
    layer_class: str | None = None
    variables: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "class": self.layer_class, "reason": self.reason,
                "variables": list(self.variables)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "NotChecked":
        return cls(doc["target"], doc["reason"], doc.get("kind", "layer"), doc.get("class"),
                   tuple(doc.get("variables", ())))


@dataclass(frozen=True)
class Certificate:
    """The parity certificate of one output: every comparison, what was not compared, the probes and the verdict.

    ``passed``: at least one comparison and none failed; ``failed``: one failed; ``inconclusive``: nothing could
    be compared (the reasons say why), which a transfer with ``verify`` treats as a failure."""

    checks: tuple[Check, ...]
    not_checked: tuple[NotChecked, ...]
    probes: int
    seed: int
    digest: str
    output: str
    seconds: float = 0.0
    sides: dict[str, str] = field(default_factory=dict)  # how each side was loaded (the source's model, ...)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def verdict(self) -> Verdict:
        if self.failures:
            return "failed"
        return "passed" if self.checks else "inconclusive"

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def counts(self) -> dict[str, int]:
        kinds = {k: sum(c.kind == k for c in self.checks) for k in get_args(CheckKind)}
        return {**kinds, "failed": len(self.failures), "not_checked": len(self.not_checked)}

    def summary(self) -> str:
        """One line: the verdict and what it rests on."""
        c = self.counts()
        checked = ", ".join(f"{c[k]} {_KIND_WORDS[k][c[k] != 1]}" for k in get_args(CheckKind) if c[k])
        base = (f"certificate {self.verdict}: {checked or 'nothing'} compared on {self.probes} probes (seed "
                f"{self.seed}), {c['not_checked']} not checked")
        if self.failures:
            first = self.failures[0]
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return f"{base}; first failure: {first.words()}{more}"
        if not self.checks:
            reason = self.not_checked[0] if self.not_checked else None
            return base + (f"; e.g. {reason.target!r}: {reason.reason}" if reason else "; the plan copies nothing")
        exact = sum(c.bit_equal for c in self.checks)
        return (base + f"; largest difference {max(c.max_abs for c in self.checks):.3g}"
                + (f" ({exact} bit-equal as copied)" if exact else ""))

    def failure_message(self) -> str:
        """The one line a failed (or inconclusive) run prints."""
        if self.verdict == "inconclusive":
            return (f"{self.summary()}: nothing proves the output computes what the source did. Declare output "
                    "pairs under verify: in the rules, name the models (verify: source_model/target_model), or "
                    "transfer without --verify")
        return self.summary() + "; nothing was published"

    def variable_status(self) -> dict[str, str]:
        """What the certificate says of each target variable it names: ``passed``, ``failed`` or ``not checked:
        <reason>`` (the plan table's ``verified`` column)."""
        status: dict[str, str] = {}
        for n in self.not_checked:
            for v in n.variables:
                status.setdefault(v, f"not checked: {n.reason}")
        for c in self.checks:  # a comparison covering a variable wins over a reason
            for v in c.variables:
                if status.get(v) != "failed":
                    status[v] = "passed" if c.passed else "failed"
        return status

    def rows(self) -> list[dict[str, Any]]:
        """The certificate as a table (the flow's artifact): failures first, then comparisons, then the rest."""
        checks = sorted(self.checks, key=lambda c: c.passed)
        rows = [{"verdict": "passed" if c.passed else "FAILED", "kind": c.kind, "target": c.target, "source": c.source,
                 "class": c.layer_class or "", "max_abs": f"{c.max_abs:.3g}", "max_rel": f"{c.max_rel:.3g}",
                 "tolerance": c.tolerance_words(), "note": "; ".join(x for x in (c.cause, c.note) if x)}
                for c in checks]
        return rows + [{"verdict": "not checked", "kind": n.kind, "target": n.target, "source": "",
                        "class": n.layer_class or "", "max_abs": "", "max_rel": "", "tolerance": "", "note": n.reason}
                       for n in self.not_checked]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "summary": self.summary(), "digest": self.digest, "output": self.output,
                "probes": self.probes, "seed": self.seed, "seconds": round(self.seconds, 3), "counts": self.counts(),
                "sides": dict(self.sides), "checks": [c.to_json() for c in self.checks],
                "not_checked": [n.to_json() for n in self.not_checked]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Certificate":
        return cls(tuple(Check.from_json(c) for c in doc["checks"]),
                   tuple(NotChecked.from_json(n) for n in doc["not_checked"]), doc["probes"], doc["seed"],
                   doc["digest"], doc["output"], doc.get("seconds", 0.0), dict(doc.get("sides", {})))


def unique(items: Iterable[NotChecked]) -> tuple[NotChecked, ...]:
    """Each not-checked record once (by kind and target), in order."""
    seen: dict[tuple[str, str], NotChecked] = {}
    for item in items:
        seen.setdefault((item.kind, item.target), item)
    return tuple(seen.values())
