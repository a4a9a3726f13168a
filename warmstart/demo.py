"""``warmstart demo``: the main job on an embedded default, with example data it writes itself."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from . import plan
from ._render import render_plan
from .examples import write_example_set
from .table import read_table

__all__ = ["run_demo"]


def run_demo(directory: str | Path) -> int:
    """Write a BERT-style source and a renamed, grown target, then plan the warm start. Returns an exit code."""
    console = Console() if Console().is_terminal else Console(width=200)
    root = Path(directory).resolve()
    console.rule("1. example data (written by TensorFlow)")
    examples = write_example_set(root)
    console.print(f"source (pretrained, bert/..., Adam slots): {examples.source}")
    console.print(f"target (new model template, model/..., grown vocab, new head): {examples.target}")
    console.print(f"rules: {examples.rules}")
    source = read_table(examples.source)
    console.print(f"inspect: {len(source)} variables, {source.num_elements:,} parameters in {source.origin}")

    console.rule("2. plan without rules: strict, so it fails")
    strict = plan(examples.source, examples.target)
    console.print(f"[red]{strict.failure_message()}[/]")

    console.rule("3. plan with the rules")
    result = plan(examples.source, examples.target, rules=examples.rules)
    render_plan(result, console)
    console.rule("repeat it yourself")
    console.print(f"warmstart inspect {examples.source}")
    console.print(f"warmstart plan {examples.source} {examples.target} --rules {examples.rules}")
    return 0 if result.ok else 1
