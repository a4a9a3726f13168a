"""The reusable ``warm-start`` flow: fetch, validate, transfer, upload, report.

Orchestration only: every stage is a task making one engine call. It runs from the Prefect UI
(the parameter form), on a schedule, on a new-checkpoint event, via ``run_deployment``, or as a
subflow of a retraining flow. It returns a small report, persisted for ``run_deployment`` callers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks import fetch_index, fetch_tensors, publish_report, transfer, upload, validate
from warmstart.errors import PlanError
from warmstart.planning import Rules

from .shards import sharded_transfer

__all__ = ["WarmStartRequest", "warm_start"]


class WarmStartRequest(BaseModel):
    """What to warm-start from, into what, and where to publish it."""

    model_config = ConfigDict(extra="forbid", title="Warm start")

    source: str = Field(
        title="Source checkpoint",
        description="The trained checkpoint: a prefix (…/model.ckpt-1000) or a directory with a 'checkpoint' "
        "state file, or a Keras file (.keras, .weights.h5, .weights.json, legacy .h5). Local path, file://, "
        "s3://, gs:// or memory://.",
        examples=["s3://models/bert-base/run-42"],
    )
    target: str = Field(
        title="Target",
        description="What the new model expects: a template checkpoint, a TF1 MetaGraph (.meta), a Keras file "
        "(.keras), a signature (.json), or a builder py:package.module:function.",
        examples=["s3://models/classifier/init"],
    )
    output: str = Field(
        title="Output directory",
        description="Where the warm-started checkpoint is published (with its 'checkpoint' state file and "
        "warmstart.json manifest). Must be empty unless 'Overwrite' is set.",
        examples=["s3://models/classifier/warm/2026-11-24"],
    )
    rules: Rules | None = Field(
        default=None, title="Rules",
        description="Inline rules: renames, include/exclude, what to do on missing variables and on shape or "
        "dtype mismatches. Leave empty to use a rules file, or strict defaults.",
    )
    rules_url: str | None = Field(
        default=None, title="Rules file",
        description="URL of a YAML/JSON rules file (used when no inline rules are given).",
    )
    strategy: Literal["auto", "stream", "restore", "assign"] = Field(
        default="auto", title="Strategy",
        description="auto: stream for template checkpoints and signatures, restore for graphs and models.",
    )
    dry_run: bool = Field(default=False, title="Dry run",
                          description="Validate and publish the plan only; copy and write nothing.")
    overwrite: bool = Field(default=False, title="Overwrite",
                            description="Replace a previous warm start in the output directory.")
    shards: int | None = Field(
        default=None, ge=1, le=100_000, title="Output data files",
        description="Write the checkpoint as this many data files, each by a unit of work run on Dask workers "
        "(sharded, parallel, resumable). Empty: one data file, written by this flow's process.",
    )
    dask_address: str | None = Field(
        default=None, title="Dask scheduler",
        description="Address of an existing Dask cluster's scheduler (tcp://host:8786) for the units. Empty with "
        "'Output data files' set: a local cluster, one worker process per core.",
    )
    credentials_block: str | None = Field(
        default=None, title="Storage credentials block",
        description="A Prefect block with storage credentials: 'secret/NAME' (JSON fsspec storage options), "
        "'aws-credentials/NAME' or 'gcp-credentials/NAME'. Empty: the worker's environment credentials.",
    )

    @model_validator(mode="after")
    def _one_rules_source(self) -> "WarmStartRequest":
        if self.rules is not None and self.rules_url:
            raise ValueError("give either inline rules or a rules file URL, not both")
        return self

    def rules_argument(self) -> dict[str, Any] | str | None:
        """What the engine accepts as rules: a dict, a URL, or None (strict defaults)."""
        if self.rules is not None:
            return self.rules.model_dump(mode="json")
        return self.rules_url


def _short(url: str) -> str:
    return url.rstrip("/").rsplit("/", 2)[-1] if "/" in url.rstrip("/") else url


def _run_name() -> str:
    request = flow_run.parameters.get("request") or {}
    if isinstance(request, BaseModel):
        request = request.model_dump()
    source, output = request.get("source", "?"), request.get("output", "?")
    return f"warm-start {_short(source)} -> {_short(output)}" + (" (dry run)" if request.get("dry_run") else "")


@flow(name="warm-start", flow_run_name=_run_name, persist_result=True, validate_parameters=True)
def warm_start(request: WarmStartRequest) -> dict[str, Any]:
    """Warm-start ``request.target`` from ``request.source`` and publish it at ``request.output``."""
    started = time.perf_counter()
    creds, rules = request.credentials_block, request.rules_argument()
    index = fetch_index(request.source, creds)
    plan = validate(index, request.target, rules, creds, dry_run=request.dry_run, output=request.output,
                    overwrite=request.overwrite)
    summary: dict[str, Any] = {
        "status": plan["status"] if not request.dry_run else f"dry run ({plan['status']})",
        "source": index["url"], "target": request.target, "output": None, "manifest": None,
        "counts": plan["counts"], "coverage": plan["coverage"], "transferred_bytes": plan["transferred_bytes"],
        "unused_source_count": len(plan["unused_source"]), "errors": plan["errors"],
        "positional": plan.get("positional", 0),
        "source_index_cached": index["hit"], "flow_run": str(flow_run.id),
    }
    if not request.dry_run and (request.shards or request.dask_address):
        report = sharded_transfer(request, rules, creds)
        summary.update(output=report["output"], manifest=report["manifest"], strategy=report["strategy"],
                       bytes_read=report["bytes_read"], bytes_written=report["bytes_written"],
                       shards=request.shards or 1)
    elif not request.dry_run:
        keys = sorted({row["source_key"] for row in plan["variables"] if row["action"] in ("copy", "cast")})
        tensors = fetch_tensors(index, keys, creds)
        staging = tempfile.mkdtemp(prefix="warm-start-")
        try:
            report = transfer(index, tensors, request.target, staging, rules, request.strategy, creds)
            published = upload(staging, request.output, index["url"], request.target, rules, creds,
                               overwrite=request.overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary.update(output=published["output"], manifest=published["manifest"], strategy=report["strategy"],
                       bytes_read=report["bytes_read"] if tensors.get("direct") else tensors["bytes_downloaded"],
                       bytes_written=report["bytes_written"], source_tensors_cached=tensors["hit"])
    summary["seconds"] = round(time.perf_counter() - started, 3)
    publish_report(summary)
    if plan["status"] != "ok":  # a dry run whose plan fails: its artifacts are published, the run is Failed
        raise PlanError(f"dry run: the plan does not satisfy the rules ({len(plan['errors'])} problem(s)); "
                        "see the warm-start-plan artifact")
    return summary
