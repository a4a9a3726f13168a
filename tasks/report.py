"""Report task: the run's summary artifacts (markdown summary and a link to the output)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.planning import COUNTED
from warmstart.planning.report import human_bytes
from warmstart.planning.report import unchecked_words

from ._common import METADATA_TIMEOUT

__all__ = ["publish_report"]


@task(name="report", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT)
def publish_report(summary: dict[str, Any]) -> None:
    """Markdown summary (counts, coverage, bytes, time, output) and, when published, a link to the output."""
    counts = summary.get("counts", {})
    rows = "\n".join(f"| {action} | {counts.get(action, 0)} |" for action in (*COUNTED, "remap")
                     if action != "remap" or action in counts)
    lines = [
        f"# Warm start: {summary['status']}",
        "",
        f"- **source**: `{summary['source']}`",
        f"- **target**: `{summary['target']}`",
        f"- **output**: `{summary.get('output') or '(dry run: nothing written)'}`",
        f"- **strategy**: {summary.get('strategy', '-')}",
        f"- **coverage**: {summary.get('coverage', 0.0):.1%} of target parameters",
        f"- **bytes copied**: {human_bytes(summary.get('transferred_bytes', 0))}; read "
        f"{human_bytes(summary.get('bytes_read', 0))}, written {human_bytes(summary.get('bytes_written', 0))}",
        f"- **time**: {summary.get('seconds', 0.0):.2f} s",
        f"- **plan digest**: `{summary.get('digest', '-')}`",
        f"- **certificate**: {(summary.get('verify') or {}).get('summary') or 'none (verify: off)'}",
        f"- **unused source variables**: {summary.get('unused_source_count', 0)}",
        "",
        "| action | variables |",
        "|---|---|",
        rows,
    ]
    if summary.get("inputs"):
        lines += ["", "| input | url | version |", "|---|---|---|"] + [
            f"| {_input_label(i)} | `{i['url']}` | {_version_words(i)} |" for i in summary["inputs"]]
    if summary.get("sources"):
        lines += ["", "| source | url | coverage |", "|---|---|---|"] + [
            f"| {name} | `{s['url']}` | {s['coverage']:.1%} |" for name, s in summary["sources"].items()]
    if summary.get("positional"):
        lines += ["", f"**warning**: {summary.get('positional_words') or str(summary['positional']) + ' matched by position'}"]
    if summary.get("unchecked"):
        lines += ["", f"**note**: {unchecked_words(summary['unchecked'])}; a checkpoint records one CRC32C per "
                      "whole tensor"]
    if summary.get("errors"):
        lines += ["", f"**{len(summary['errors'])} problem(s)**, first: {summary['errors'][0]}"]
    create_markdown_artifact("\n".join(lines), key="warm-start-summary", description="Warm-start summary")
    if summary.get("manifest"):
        create_link_artifact(summary["manifest"], link_text="warmstart.json (manifest of the output)",
                             key="warm-start-output", description=f"Output: {summary.get('output')}")


def _input_label(pin: dict[str, Any]) -> str:
    return f"{pin['role']} {pin['name']}" if pin["role"] == "source" else pin["role"]


def _version_words(pin: dict[str, Any]) -> str:
    """The version the plan pinned, short: the first file's (an index, a Keras file), or why there is none."""
    if not pin["pinned"]:
        return "not pinned (code or a live object)"
    if not pin["files"] or pin["files"][0]["version"] is None:
        return "absent"
    version = pin["files"][0]["version"]
    word = " ".join(f"{k} {v}" for k, v in version.items() if k != "size")
    more = f" (+{len(pin['files']) - 1} files)" if len(pin["files"]) > 1 else ""
    return f"{version.get('size', '?')} bytes, {word}{more}"
