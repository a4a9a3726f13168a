"""Tasks of a sharded warm start: prepare the units, run one unit (mapped, on Dask), publish or roll back.

No credentials pass between them: the job and its units travel without storage options (they become
the unit subflow's parameters, which the Prefect API records), and each task loads the options from
the credentials block itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart.pipeline import ShardedJob, abort_sharded, commit_sharded, prepare_sharded
from warmstart.planning import Plan
from warmstart.strategies import Unit, UnitResult, run_unit_retrying

from ._common import DATA_TIMEOUT, METADATA_TIMEOUT
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["prepare_units", "transfer_unit", "publish_units", "abort_units"]


@task(name="prepare-units", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=METADATA_TIMEOUT)
def prepare_units(plan: Plan, target: str, output: str, shards: int, credentials_block: CredentialsRef = None,
                  overwrite: bool = False) -> ShardedJob:
    """Reopen the validated ``plan``'s inputs (unchanged, or the task fails), prepare the output (marked
    incomplete) and split the plan into ``shards`` units."""
    job = prepare_sharded(None, target, output, shards, storage_options=storage_options_from_block(credentials_block),
                          overwrite=overwrite, plan=plan)
    return job.with_storage_options(None)


@task(name="transfer-unit", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=DATA_TIMEOUT,
      task_run_name="unit {unit.index} of {unit.count}")
def transfer_unit(unit: Unit, credentials_block: CredentialsRef = None) -> UnitResult:
    """Write one data file of the output under its staging name (reused if an earlier run staged it);
    transient storage errors are retried inside the unit."""
    return run_unit_retrying(replace(unit, storage_options=storage_options_from_block(credentials_block)))


@task(name="publish-units", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT)
def publish_units(job: ShardedJob, results: list[UnitResult], credentials_block: CredentialsRef = None) -> dict[str, Any]:
    """Rename the staged parts, write the merged index, the state file and the manifest."""
    return commit_sharded(job.with_storage_options(storage_options_from_block(credentials_block)), results).to_json()


@task(name="abort-units", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT)
def abort_units(job: ShardedJob, credentials_block: CredentialsRef = None) -> None:
    """Remove what a failed sharded run wrote in its output."""
    abort_sharded(job.with_storage_options(storage_options_from_block(credentials_block)))
