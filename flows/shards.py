"""The sharded branch of the warm-start flow: units mapped over a Dask cluster.

``transfer_units`` is a subflow whose task runner is a ``prefect_dask.DaskTaskRunner``: pointed at an
existing cluster when an address is given (``tcp://scheduler:8786``), otherwise on a local cluster it
starts (one single-threaded worker process per core, at most one per unit). Its workers need the
Prefect API's address (``PREFECT_API_URL``) and the storage credentials, as the flow's process does.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, unmapped
from prefect.futures import wait

from warmstart.tasks import abort_units, prepare_units, publish_units, transfer_unit
from warmstart.tasks._common import DATA_TIMEOUT
from warmstart.tasks.credentials import CredentialsRef

__all__ = ["dask_runner", "sharded_transfer"]


def dask_runner(address: str | None, units: int):
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    workers = max(1, min(units, os.cpu_count() or 1))
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="warm-start-units", persist_result=False, validate_parameters=False, timeout_seconds=DATA_TIMEOUT,
      flow_run_name="warm-start units: {units[0].count} data files -> {units[0].output}")
def transfer_units(units: list[Any], credentials_block: CredentialsRef = None) -> list[Any]:
    """Run every unit (one task each, on the Dask workers); raises the first failure once all stopped."""
    futures = transfer_unit.map(units, credentials_block=unmapped(credentials_block))
    wait(futures)
    return [_result(f, unit) for f, unit in zip(futures, units)]


def _result(future, unit) -> Any:
    """A unit's result, or its error as the engine types it (every worker that ran it lost: a storage error)."""
    from warmstart.strategies import unit_error

    try:
        return future.result()
    except Exception as exc:
        typed = unit_error(exc, unit)
        if typed is exc:
            raise
        raise typed from None


def sharded_transfer(request, plan, creds) -> dict[str, Any]:
    """Prepare the validated ``plan``'s units, run them on Dask, publish (or roll back); returns the report JSON."""
    if request.dask_address:  # reached first: a scheduler out of reach is refused before the output is touched
        from warmstart.strategies import dask_client

        with dask_client(request.dask_address):
            pass
    job = prepare_units(plan, request.target, request.output, request.shards or 1, creds, overwrite=request.overwrite)
    try:
        results = transfer_units.with_options(task_runner=dask_runner(request.dask_address, len(job.units)))(
            job.units, creds)
    except BaseException:
        abort_units(job, creds)
        raise
    return publish_units(job, results, creds)
