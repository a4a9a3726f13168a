"""A certificate on a terminal: one row per comparison (failures first) and per layer not compared, then the
verdict. rich is imported here only."""

from __future__ import annotations

from typing import Any

from .certificate import Certificate

__all__ = ["render_certificate"]

_STYLE = {"passed": "green", "FAILED": "bold red", "not checked": "yellow"}


def render_certificate(certificate: Certificate, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"parity certificate of {certificate.output}", title_justify="left")
    for column in ("verdict", "kind", "target", "source", "class", "max abs", "max rel", "tolerance", "note"):
        table.add_column(column, overflow="fold")
    for row in certificate.rows():
        style = _STYLE.get(row["verdict"], "")
        table.add_row(f"[{style}]{row['verdict']}[/]" if style else row["verdict"], row["kind"], row["target"],
                      row["source"], row["class"], row["max_abs"], row["max_rel"], row["tolerance"], row["note"])
    console.print(table)
    console.print(("[green]" if certificate.passed else "[bold red]") + certificate.summary() + "[/]", highlight=False)
