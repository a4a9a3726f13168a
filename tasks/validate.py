"""Validate task: plan the transfer against the cached source index; fail unless it satisfies the rules."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CheckpointCache
from warmstart.errors import PlanError

from ._common import storage_options_from_block

__all__ = ["validate"]


@task(name="validate", cache_policy=NO_CACHE)
def validate(index: dict[str, Any], target: str, rules: dict[str, Any] | str | None = None,
             credentials_block: str | None = None, dry_run: bool = False,
             cache_dir: str | None = None) -> dict[str, Any]:
    """The plan as JSON, also published as a table artifact. Raises :class:`PlanError` when the plan
    fails, unless ``dry_run`` (then the failed plan is returned for the report)."""
    plan = CheckpointCache(cache_dir).plan(CachedIndex.from_json(index), target, rules,
                                           storage_options_from_block(credentials_block))
    doc = plan.to_json()
    create_table_artifact(
        key="warm-start-plan",
        table=[{k: v for k, v in row.items() if k in ("target", "action", "source", "shape", "dtype", "reason")}
               for row in doc["variables"]],
        description=f"Warm-start plan ({doc['status']}): {plan.summary()}",
    )
    if not plan.ok and not dry_run:
        raise PlanError(plan.failure_message(), plan)
    return doc
