"""The reusable ``warm-start`` flow: fetch, validate, transfer, upload, report.

Orchestration only: every stage is a task making one engine call. It runs from the Prefect UI
(the parameter form), on a schedule, on a new-checkpoint event, via ``run_deployment``, or as a
subflow of a retraining flow. It returns a small report, persisted for ``run_deployment`` callers.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks import fetch_index, fetch_source_indexes, fetch_tensors, publish_report, transfer, upload, validate
from tasks._common import FLOW_TIMEOUT
from tasks.credentials import CredentialsParameter, credentials_reference
from warmstart.errors import PlanError, UsageError
from warmstart.storage import resolve
from warmstart.planning import MAIN_SOURCE, Rules
from warmstart.planning.report import positional_words

from .shards import sharded_transfer

__all__ = ["WarmStartRequest", "warm_start"]

MISSING = "missing:"  # a source the event trigger renders when the event lacks the field after it
LOCK_LEASE_SECONDS = 300  # renewed while the run holds its output; a crashed run's lock expires


class WarmStartRequest(BaseModel):
    """The flow's parameters, checked together (the form describes each: see :func:`warm_start`)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    target: str
    output: str
    rules: Rules | None = None
    rules_url: str | None = None
    strategy: Literal["auto", "stream", "restore", "assign"] = "auto"
    dry_run: bool = False
    overwrite: bool = False
    shards: int | None = Field(default=None, ge=1, le=100_000)
    dask_address: str | None = None
    credentials: CredentialsParameter = None
    credentials_block: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> "WarmStartRequest":
        if self.rules is not None and self.rules_url:
            raise ValueError("give either inline rules or a rules file URL, not both")
        if self.credentials is not None and self.credentials_block:
            raise ValueError("give either a credentials block or a credentials_block name, not both")
        return self

    def credentials_argument(self) -> Any:
        """What the tasks take: a saved block's slug (each task loads it), an unsaved block, or None."""
        return credentials_reference(self.credentials) if self.credentials is not None else self.credentials_block

    def rules_argument(self) -> dict[str, Any] | str | None:
        """What the engine accepts as rules: a dict, a URL, or None (strict defaults)."""
        if self.rules is not None:
            return self.rules.model_dump(mode="json")
        return self.rules_url


@contextlib.contextmanager
def _one_publisher(output: str) -> Iterator[None]:
    """Runs that publish to the same output take turns (a Prefect global concurrency limit of 1 named
    after the output): the second finds the first's output and fails as "not empty" (or, with
    overwrite, replaces it whole); never a mix of the two."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = "warmstart-output-" + hashlib.sha256(resolve(output).url.encode()).hexdigest()[:20]
    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, 1)
        except ObjectAlreadyExists:  # another run created it between the read and the create
            pass
    with concurrency(name, occupy=1, strict=True, lease_duration=LOCK_LEASE_SECONDS):
        yield


def _short(url: str) -> str:
    return url.rstrip("/").rsplit("/", 2)[-1] if "/" in url.rstrip("/") else url


def _run_name() -> str:
    """``warm-start <source> -> <output>``, unless the caller named the run (``run_deployment(...,
    flow_run_name=...)``, the UI): Prefect names the runs it creates ``adjective-animal``."""
    given = flow_run.name
    if given and not re.fullmatch(r"[a-z]+-[a-z]+", given):
        return given
    params = flow_run.parameters
    source, output = params.get("source") or "?", params.get("output") or "?"
    return f"warm-start {_short(source)} -> {_short(output)}" + (" (dry run)" if params.get("dry_run") else "")


@flow(name="warm-start", flow_run_name=_run_name, persist_result=True, validate_parameters=True,
      result_serializer="json", timeout_seconds=FLOW_TIMEOUT)
def warm_start(
    source: str,
    target: str,
    output: str,
    rules: Rules | None = None,
    rules_url: str | None = None,
    strategy: Literal["auto", "stream", "restore", "assign"] = "auto",
    dry_run: bool = False,
    overwrite: bool = False,
    shards: int | None = None,
    dask_address: str | None = None,
    credentials: CredentialsParameter = None,
    credentials_block: str | None = None,
) -> dict[str, Any]:
    """Warm-start a model from a trained checkpoint and publish the result.

    Each parameter is a field of the Prefect UI's form; run_deployment(..., parameters={"output": ...})
    overrides one and keeps the deployment's others. Inline rules and a rules file together fail at once.

    Args:
        source: The trained checkpoint: a prefix (…/model.ckpt-1000) or a directory with a 'checkpoint' state
            file, or a Keras file (.keras, .weights.h5, .weights.json, legacy .h5). A local path, file://,
            s3://, gs:// or memory:// URL.
        target: What the new model expects: a template checkpoint, a TF1 MetaGraph (.meta), a Keras model
            (.keras) or weights template (.weights.h5), a signature (.json), or a builder
            py:package.module:function.
        output: Where the warm-started checkpoint is published (with its 'checkpoint' state file and
            warmstart.json manifest). Must be empty unless 'overwrite' is set.
        rules: Inline rules: renames, include/exclude, what to do on missing variables and on shape or dtype
            mismatches. Leave empty to use a rules file, or strict defaults. Not together with rules_url.
        rules_url: URL of a YAML/JSON rules file. Not together with inline rules.
        strategy: auto: stream into template checkpoints, signatures and Keras weights files; restore into
            graphs and models that must be built.
        dry_run: Validate and publish the plan only; copy and write nothing. A failing plan fails the run.
        overwrite: Replace a previous warm start in the output directory.
        shards: Write the checkpoint as this many data files, each by a unit of work run on Dask workers.
            Empty: one data file, written by this flow's process.
        dask_address: An existing Dask cluster's scheduler (tcp://host:8786) for the units. Empty with shards
            set: a local cluster, one worker process per core.
        credentials: Storage credentials for s3:// or gs:// URLs: an AWS Credentials, S3 Bucket, GCP Credentials
            or GCS Bucket block (a bucket block lends its credentials; URLs stay whole), or a Secret holding a
            JSON object of fsspec storage options. Empty: the worker's environment.
        credentials_block: The same by name, for callers without the picker: 'aws-credentials/NAME',
            's3-bucket/NAME', 'gcp-credentials/NAME', 'gcs-bucket/NAME' or 'secret/NAME'. Not together with
            credentials.
    """
    if source.startswith(MISSING):  # what the deployments' event trigger renders for an event without it
        raise UsageError(f"no source: the triggering event has no {source[len(MISSING):]} (emit the "
                         "checkpoint.created event with payload={'url': <checkpoint URL>})")
    request = WarmStartRequest(source=source, target=target, output=output, rules=rules, rules_url=rules_url,
                               strategy=strategy, dry_run=dry_run, overwrite=overwrite, shards=shards,
                               dask_address=dask_address, credentials=credentials,
                               credentials_block=credentials_block)
    started = time.perf_counter()
    creds, rules = request.credentials_argument(), request.rules_argument()
    index = fetch_index(request.source, creds)
    # the named sources of the rules (sources:), each cached like the source
    named_in_rules = request.rules_url or (request.rules is not None and request.rules.sources)
    named = fetch_source_indexes(rules, creds) if named_in_rules else {}
    plan = validate(index, request.target, rules, creds, dry_run=request.dry_run, output=request.output,
                    overwrite=request.overwrite, sources=named)
    summary: dict[str, Any] = {
        "status": plan["status"] if not request.dry_run else f"dry run ({plan['status']})",
        "source": index["url"], "target": request.target, "output": None, "manifest": None,
        "counts": plan["counts"], "coverage": plan["coverage"], "transferred_bytes": plan["transferred_bytes"],
        "unused_source_count": len(plan["unused_source"]), "errors": plan["errors"],
        "positional": plan.get("positional", 0), "positional_words": positional_words(plan),
        "source_index_cached": index["hit"], "flow_run": str(flow_run.id),
    }
    if named:
        summary["sources"] = {name: {"url": s["url"], "coverage": s["coverage"]} for name, s in plan["sources"].items()}
    if not request.dry_run and (request.shards or request.dask_address):
        with _one_publisher(request.output):
            report = sharded_transfer(request, rules, creds)
        summary.update(output=report["output"], manifest=report["manifest"], strategy=report["strategy"],
                       bytes_read=report["bytes_read"], bytes_written=report["bytes_written"],
                       shards=request.shards or 1)
    elif not request.dry_run:
        keys = _source_keys(plan)
        tensors = fetch_tensors(index, keys.get(MAIN_SOURCE, []), creds)
        named_tensors = {name: fetch_tensors(record, keys.get(name, []), creds) for name, record in named.items()}
        staging = tempfile.mkdtemp(prefix="warm-start-")
        try:
            report = transfer(index, tensors, request.target, staging, rules, request.strategy, creds,
                              sources=named, source_tensors=named_tensors)
            with _one_publisher(request.output):
                published = upload(staging, request.output, index["url"], request.target, rules, creds,
                                   overwrite=request.overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary.update(output=published["output"], manifest=published["manifest"], strategy=report["strategy"],
                       bytes_read=report["bytes_read"] if tensors.get("direct") else tensors["bytes_downloaded"],
                       bytes_written=report["bytes_written"], source_tensors_cached=tensors["hit"],
                       unchecked=report.get("unchecked", []))
    summary["seconds"] = round(time.perf_counter() - started, 3)
    publish_report(summary)
    if plan["status"] != "ok":  # a dry run whose plan fails: its artifacts are published, the run is Failed
        raise PlanError(f"dry run: the plan does not satisfy the rules ({len(plan['errors'])} problem(s)); "
                        "see the warm-start-plan artifact")
    return summary


def _source_keys(plan: dict[str, Any]) -> dict[str, list[str]]:
    """The source tensors a plan's transfer reads, by source name (``main``: the source): each transferred
    row's, and a concat's other sources (in the same source)."""
    keys: dict[str, set[str]] = {}
    for row in plan["variables"]:
        if row["action"] in ("copy", "cast", "remap"):
            found = keys.setdefault(row.get("from") or MAIN_SOURCE, set())
            found.add(row["source_key"])
            found.update(source["key"] for source in row.get("remap", {}).get("sources", ()))
    return {name: sorted(found) for name, found in keys.items()}
