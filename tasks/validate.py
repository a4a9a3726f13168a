"""Validate task: plan the transfer against the cached source index; fail unless it satisfies the rules."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CheckpointCache
from warmstart.errors import PlanError
from warmstart.pipeline import check_output_for

from ._common import METADATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["validate", "FORM_HINT"]

_COLUMNS = ("action", "reason", "target", "source", "shape", "dtype")
# where a person in the Prefect UI finds every problem and what to change
FORM_HINT = ("the warm-start-plan artifact lists all, errors first; change the 'rules' or 'rules_url' field, or "
             "start a dry run to see the plan")


@task(name="validate", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT)
def validate(index: dict[str, Any], target: str, rules: dict[str, Any] | str | None = None,
             credentials_block: CredentialsRef = None, dry_run: bool = False,
             cache_dir: str | None = None, output: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """The plan as JSON, also published as a table artifact. Raises :class:`PlanError` when the plan
    fails, unless ``dry_run`` (then the failed plan is returned for the report), and
    :class:`StorageError` when ``output`` cannot take the result (not empty, not writable, an
    input's place), before any tensor is fetched."""
    started = time.perf_counter()
    options = storage_options_from_block(credentials_block)
    cache, cached = CheckpointCache(cache_dir), CachedIndex.from_json(index)
    if output is not None and not dry_run:
        check_output_for(cache.reader(cached, options), target, output, rules, options, overwrite)
    plan = cache.plan(cached, target, rules, options)
    doc = plan.to_json()
    create_table_artifact(key="warm-start-plan", table=_plan_rows(doc),
                          description=f"Warm-start plan ({doc['status']}): {plan.summary()}")
    log_stage(started, "plan %s: %s", doc["status"], plan.summary())
    if plan.positional:
        get_run_logger().warning("%d variable(s) matched by position, not by name, e.g. %r <- %r: right only if "
                                 "no layer was inserted or removed before them", len(plan.positional),
                                 plan.positional[0].target, plan.positional[0].source)
    if not plan.ok and not dry_run:
        raise PlanError(plan.failure_message(FORM_HINT), plan)
    return doc


def _plan_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan table as a person reads it: errors first, then what was decided and why; the source's
    unused variables last (action "unused")."""
    order = {"error": 0, "skip": 1, "init": 2, "cast": 3, "copy": 4}
    rows = [{k: row.get(k) for k in _COLUMNS} for row in sorted(doc["variables"],
                                                                   key=lambda r: order.get(r["action"], 5))]
    unused = [{"action": "unused", "reason": "in the source, filling no target variable", "target": None,
               "source": name, "shape": None, "dtype": None} for name in doc["unused_source"]]
    return rows + unused
