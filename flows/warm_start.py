"""The reusable ``warm-start`` flow: fetch, validate, transfer, verify (when asked), upload, report.

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
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, model_validator

from warmstart.tasks import (fetch_index, fetch_rules, fetch_source_indexes, fetch_tensors, publish_report, transfer,
                   upload, validate, verify)
from warmstart.tasks._common import FLOW_TIMEOUT
from warmstart.tasks.credentials import CredentialsParameter, credentials_reference
from warmstart.errors import PlanError, UsageError
from warmstart.formats import KERAS_WEIGHTS
from warmstart.storage import resolve
from warmstart.cache import CachedIndex
from warmstart.planning import MAIN_SOURCE, PinnedInput, Plan, Rules, Strategy
from warmstart.tables import refuse_code, refuse_code_in_rules
from warmstart.planning.report import positional_words
from warmstart.verification import VerifyMode

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
    strategy: Strategy = "auto"
    dry_run: bool = False
    overwrite: bool = False
    shards: int | None = Field(default=None, ge=1, le=100_000)
    dask_address: str | None = None
    credentials: CredentialsParameter = None
    credentials_block: str | None = None
    verify: VerifyMode = "off"

    @model_validator(mode="after")
    def _one_of_each(self) -> "WarmStartRequest":
        if self.rules is not None and self.rules_url:
            raise ValueError("give either inline rules or a rules file URL, not both")
        if self.verify != "off" and (self.shards or self.dask_address):
            raise ValueError("verify certifies a transfer made in one process: not with shards or dask_address")
        if self.credentials is not None and self.credentials_block:
            raise ValueError("give either a credentials block or a credentials_block name, not both")
        return self

    def credentials_argument(self) -> Any:
        """What the tasks take: a saved block's slug (each task loads it), an unsaved block, or None."""
        return credentials_reference(self.credentials) if self.credentials is not None else self.credentials_block


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


# The names Prefect makes up for a run: the API's, two lowercase words ("vermilion-bee"); the UI form's, a Greek
# letter perhaps with digits, a star's or a place's name and, often, a third part ("kappa5-efros",
# "eta6-sabacche-h", "tau-aquilae-nebula"). Any other name (spaces, capitals, digits elsewhere) is the caller's.
_GREEK = ("alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|rho|sigma|tau|upsilon|"
          "phi|chi|psi|omega")
_GENERATED_NAME = re.compile(rf"[a-z]+-[a-z]+|(?:{_GREEK})[0-9]*-[a-z]+(?:-[a-z]+)?")


def _run_name() -> str:
    """``warm-start <source> -> <output>``, unless the caller named the run (``run_deployment(...,
    flow_run_name=...)``, a name typed into the UI's form that is not two bare words)."""
    given = flow_run.name
    if given and not _GENERATED_NAME.fullmatch(given):
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
    strategy: Strategy = "auto",
    dry_run: bool = False,
    overwrite: bool = False,
    shards: int | None = None,
    dask_address: str | None = None,
    credentials: CredentialsParameter = None,
    credentials_block: str | None = None,
    verify: VerifyMode = "off",
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
            py:package.module:function (runs only where the deployment sets WARMSTART_ALLOW_CODE=1).
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
        verify: The parity certificate, before anything is published: the output's layers and the rules' verify:
            pairs run against the source's on seeded probes. fail: a failed certificate fails the run, nothing is
            uploaded; warn: publish and report it; off: none.
    """
    if source.startswith(MISSING):  # what the deployments' event trigger renders for an event without it
        raise UsageError(f"no source: the triggering event has no {source[len(MISSING):]} (emit the "
                         "checkpoint.created event with payload={'url': <checkpoint URL>})")
    request = WarmStartRequest(source=source, target=target, output=output, rules=rules, rules_url=rules_url,
                               strategy=strategy, dry_run=dry_run, overwrite=overwrite, shards=shards,
                               dask_address=dask_address, credentials=credentials,
                               credentials_block=credentials_block, verify=verify)
    # Parameters are data (anyone who can start a run types them): a py: builder runs only where the
    # deployment allows code (WARMSTART_ALLOW_CODE=1), or when the CLI's user typed it as TARGET.
    refuse_code(request.target, "target")
    for field, value in request.rules.code_fields() if request.rules else ():
        refuse_code_in_rules(value, "rules", field)
    started = time.perf_counter()
    creds = request.credentials_argument()
    index, named, plan = _validated(request, creds)
    doc = plan.to_json()
    summary: dict[str, Any] = {
        "status": doc["status"] if not request.dry_run else f"dry run ({doc['status']})",
        "source": index.url, "target": request.target, "output": None, "manifest": None,
        "counts": doc["counts"], "coverage": doc["coverage"], "transferred_bytes": doc["transferred_bytes"],
        "unused_source_count": len(doc["unused_source"]), "errors": doc["errors"],
        "positional": doc.get("positional", 0), "positional_words": positional_words(doc),
        "digest": plan.digest, "inputs": doc["inputs"],
        "source_index_cached": index.hit, "flow_run": str(flow_run.id), "flow_run_url": _run_page(),
        "plan": doc,
    }
    if named:
        summary["sources"] = {name: {"url": s["url"], "coverage": s["coverage"]} for name, s in doc["sources"].items()}
    if not request.dry_run and (request.shards or request.dask_address):
        with _one_publisher(request.output):
            report = sharded_transfer(request, plan, creds)
        summary.update(output=report["output"], manifest=report["manifest"], strategy=report["strategy"],
                       bytes_read=report["bytes_read"], bytes_written=report["bytes_written"],
                       shards=request.shards or 1)
    elif not request.dry_run:
        summary.update(_copy_and_publish(request, plan, index, named, creds))
    summary["seconds"] = round(time.perf_counter() - started, 3)
    publish_report(summary)
    if not plan.ok:  # a dry run whose plan fails: its artifacts are published, the run is Failed
        raise PlanError(f"dry run: the plan does not satisfy the rules ({len(doc['errors'])} problem(s)); "
                        "see the warm-start-plan artifact")
    return summary


def _run_page() -> str | None:
    """The run's page in the Prefect UI (the address Prefect's "View at" line names); None where no UI serves it
    (Prefect's temporary server)."""
    from prefect.settings import get_current_settings
    from prefect.utilities.urls import url_for

    return url_for("flow-run", obj_id=flow_run.id) if get_current_settings().ui_url else None


def _validated(request: WarmStartRequest, creds: Any) -> tuple[CachedIndex, dict[str, CachedIndex], Plan]:
    """Read the rules (once: every later step takes them, and the plan made from them, never the URL), cache
    the sources' indexes, and validate: the plan, every input pinned by version, is what the run executes."""
    rules, rules_input = fetch_rules(request.rules_url, creds) if request.rules_url else (request.rules or Rules(), None)
    index = fetch_index(request.source, creds)
    named = fetch_source_indexes(rules, creds) if rules.sources else {}  # the rules' sources:, cached alike
    plan = validate(index, request.target, rules, creds, dry_run=request.dry_run, output=request.output,
                    overwrite=request.overwrite, sources=named, strategy=request.strategy, rules_input=rules_input)
    return index, named, plan


def _copy_and_publish(request: WarmStartRequest, plan: Plan, index: CachedIndex, named: dict[str, CachedIndex],
                      creds: Any) -> dict[str, Any]:
    """Fetch the tensors the plan reads (from the versions it pinned), execute the plan into a staging
    directory, publish it; returns the summary's figures."""
    keys = plan.source_keys()
    tensors = fetch_tensors(index, keys.get(MAIN_SOURCE, []), _pin(plan, MAIN_SOURCE), creds)
    named_tensors = {name: fetch_tensors(record, keys.get(name, []), _pin(plan, name), creds)
                     for name, record in named.items()}
    staging = tempfile.mkdtemp(prefix="warm-start-")
    try:
        report = transfer(plan, index, tensors, request.target, staging, creds, sources=named,
                          source_tensors=named_tensors)
        certificate = verify(plan, index, tensors, request.target, staging, creds, mode=request.verify, sources=named,
                             source_tensors=named_tensors, output=request.output) if request.verify != "off" else None
        with _one_publisher(request.output):
            published = upload(staging, request.output, plan, creds, overwrite=request.overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"output": published["output"], "manifest": published["manifest"], "strategy": report["strategy"],
            "bytes_read": report["bytes_read"] if tensors.direct else tensors.bytes_downloaded,
            "bytes_written": report["bytes_written"], "source_tensors_cached": tensors.hit,
            "unchecked": report.get("unchecked", []), "verify": certificate,
            "keras_weights": published["output"].rstrip("/") + "/" + KERAS_WEIGHTS
            if KERAS_WEIGHTS in published["files"] else None}


def _pin(plan: Plan, name: str) -> PinnedInput | None:
    found = plan.pinned("source", name)
    return found[0] if found else None
