"""Human-readable output for the CLI (rich tables).

Names are wrapped after a ``/`` (reasons at spaces too), never inside a part: ``LayerNorm/gamma`` is never cut
into ``LayerNorm/gamm`` and ``a``. A part wider than its column is folded only when the terminal is narrower than
that part; ``--json`` has every name whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..tables import VariableTable
from .plan import Plan
from .report import human_bytes, positional_words

__all__ = ["render_table", "render_plan", "human_bytes"]

_ACTION_STYLE = {"copy": "green", "cast": "cyan", "remap": "blue", "init": "yellow", "skip": "magenta", "error": "bold red"}


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _console() -> Console:
    console = Console()
    # Piped output (CI logs, `| less`) is not limited to rich's default of 80 columns.
    return console if console.is_terminal else Console(width=200)


# A piece of text that may end a line: up to and including a '/' or a run of spaces.
_PIECE = re.compile(r"[^/ ]*(?:/| +|$)")


class _Wrapped:
    """A table cell that breaks lines only after a '/' or a space: the column is never narrower than its widest
    piece unless the terminal is."""

    def __init__(self, text: str, style: str = ""):
        self.pieces = [p for p in _PIECE.findall(text) if p]
        self.style = style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((len(p.rstrip(" ")) for p in self.pieces), default=1)
        return Measurement(min(widest, options.max_width), sum(map(len, self.pieces)))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Any]:
        lines, line = [], ""
        for piece in self.pieces:
            if line and len(line) + len(piece.rstrip(" ")) > options.max_width:
                lines.append(line.rstrip(" "))
                line = ""
            line += piece
        lines.append(line.rstrip(" "))
        yield Text("\n".join(lines), style=self.style, overflow="fold")


def render_table(table: VariableTable, console: Console | None = None) -> None:
    console = console or _console()
    out = Table(title=f"{table.origin} ({table.kind})", title_justify="left")
    out.add_column("name")
    out.add_column("dtype")
    out.add_column("shape")
    out.add_column("bytes", justify="right", no_wrap=True)
    for v in table.variables:
        out.add_row(_Wrapped(v.name), v.dtype, _shape(v.shape), human_bytes(v.nbytes))
    console.print(out)
    total = sum(v.nbytes or 0 for v in table.variables)
    console.print(f"{len(table)} variables, {table.num_elements:,} parameters, {human_bytes(total)}")


def render_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or _console()
    several = len(plan.sources) > 1
    out = Table(title=f"plan: {plan.source.origin} -> {plan.target.origin}", title_justify="left")
    out.add_column("target")
    out.add_column("action", no_wrap=True)
    if several:
        out.add_column("from")
    out.add_column("source")
    out.add_column("shape")
    out.add_column("dtype", no_wrap=True)
    out.add_column("reason")
    for e in plan.entries:
        style = _ACTION_STYLE[e.action]
        origin = [e.from_source or "-"] if several else []
        out.add_row(_Wrapped(e.target), f"[{style}]{e.action}[/]", *origin, _Wrapped(" + ".join(e.sources) or "-"),
                    _Wrapped(_shape(e.shape)), e.dtype, _Wrapped(e.reason))
    console.print(out)
    coverage = plan.coverage_by_source()
    for name in plan.sources:
        unused = plan.unused_in(name)
        if several:
            console.print(f"source {name!r} ({plan.sources[name].origin}): coverage {coverage[name]:.1%}")
        if unused:
            shown = ", ".join(unused[:8])
            more = f" and {len(unused) - 8} more" if len(unused) > 8 else ""
            label = f"unused variables of {name!r}" if several else "unused source variables"
            console.print(f"{label} ({len(unused)}): {shown}{more}")
    for problem in plan.rule_errors:
        console.print(f"[bold red]rule error:[/] {problem}")
    warning = positional_words(plan.to_json())
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    if plan.hint:
        console.print(f"[cyan]hint:[/] {plan.hint}", highlight=False)
    status = "[green]ok[/]" if plan.ok else "[bold red]failed[/]"
    console.print(f"{plan.summary()}; {human_bytes(plan.transferred_bytes)} to copy; status {status}")
    if plan.inputs:
        console.print(f"plan digest {plan.digest[:16]}; inputs: "
                      + ", ".join(f"{i.role} {i.url}" for i in plan.inputs if i.role in ("source", "target")))
