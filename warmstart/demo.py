"""``warmstart demo``: the main job on an embedded default, with example data it writes itself.

Writes a BERT-style pretrained checkpoint and a renamed model with a grown vocabulary and a new
head (with TensorFlow), shows the strict plan failing, then runs the Prefect warm-start flow on
local files with Prefect's ephemeral API (unless PREFECT_API_URL is set), its parity certificate
made before anything is published (both graphs' pooled output on the same probes), and checks the
output with TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from ._quiet import quiet_import
from . import plan
from .examples import write_example_set
from .planning.plan import TRANSFERRED
from .planning.render import render_plan
from .planning.report import human_bytes
from .tables import read_table
from .verification import Certificate
from .verification.render import render_certificate

__all__ = ["run_demo"]


def run_demo(directory: str | Path) -> int:
    """Returns an exit code: 0 when the warm start was published and TensorFlow finds it."""
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
    console.print(f"[red]{plan(examples.source, examples.target).failure_message()}[/]")

    console.rule("3. the plan with the rules")
    render_plan(plan(examples.source, examples.target, rules=examples.rules), console)

    console.rule("4. the warm-start flow (Prefect), certified before it publishes")
    summary = _run_flow(examples, root / "warm-started")
    console.print(summary_words(summary), highlight=False)
    render_certificate(Certificate.from_json(summary["verify"]), console)

    console.rule("5. TensorFlow loads the result")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = quiet_import("tensorflow")

    latest = tf.train.latest_checkpoint(str(root / "warm-started"))
    console.print(f"tf.train.latest_checkpoint -> {latest}")
    console.print(f"{len(tf.train.list_variables(latest))} variables in the output; manifest {summary['manifest']}")
    console.rule("repeat it yourself")
    console.print(f"warmstart plan {examples.source} {examples.target} --rules {examples.rules}")
    console.print(f"warmstart transfer {examples.source} {examples.target} {root / 'again'} --rules {examples.rules} "
                  "--verify")
    console.print(f"warmstart verify {examples.source} {examples.target} {root / 'warm-started'} --rules {examples.rules}")
    return 0 if latest and summary["verify"]["verdict"] == "passed" else 1


def summary_words(summary: dict) -> str:
    """The flow's summary, in a few lines a person reads (the whole of it is the run's result and artifacts)."""
    counts = summary["counts"]
    copied = sum(counts.get(action, 0) for action in TRANSFERRED)
    kept = counts.get("init", 0) + counts.get("skip", 0)
    return (f"{summary['status']}: published {summary['output']}\n"
            f"  {copied} variables copied, {kept} kept their initial value (coverage {summary['coverage']:.1%}); "
            f"{human_bytes(summary['bytes_written'])} written in {summary['seconds']:.2f} s (strategy "
            f"{summary['strategy']})\n"
            f"  plan digest {summary['digest'][:16]}; manifest {summary['manifest']}")


def _run_flow(examples, output: Path) -> dict:
    from warmstart.flows.warm_start import warm_start

    return warm_start(source=examples.source, target=examples.target, output=str(output), rules_url=examples.rules,
                      overwrite=True, verify="fail")
