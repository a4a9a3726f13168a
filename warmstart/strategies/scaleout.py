"""Running the units of a sharded transfer: in this process, or on a Dask cluster.

On Dask (``distributed``, imported only here and only when asked for) each unit is one task, run by
whichever worker the scheduler picks; a worker lost mid-unit (killed, out of memory) has its unit
run again elsewhere by the scheduler, and a unit's transient storage errors are retried by the unit
itself (:func:`run_unit_retrying`). Every unit has finished, failed or been lost before this returns
or raises, so a caller that rolls back after an error removes every part: none is still being
written.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from ..errors import StorageError, UsageError
from .units import Unit, UnitResult, run_unit_retrying

__all__ = ["dask_client", "run_units", "unit_error"]

log = logging.getLogger(__name__)


def run_units(units: list[Unit], dask: Any = None) -> list[UnitResult]:
    """Run ``units``; returns their results in order, or raises the first failed unit's error.

    ``dask``: None (here, one unit after the other), a ``distributed.Client``, or a scheduler address
    (``tcp://host:8786``) to connect to for this call.
    """
    if dask is None:
        return [run_unit_retrying(unit) for unit in units]
    with dask_client(dask) as client:
        return _run_on(client, units)


@contextlib.contextmanager
def dask_client(dask: Any) -> Iterator[Any]:
    """The ``distributed.Client`` that ``dask`` names (None: none; a scheduler address: connected here and
    closed after). Raises :class:`UsageError` for anything else, or an address no scheduler answers at."""
    if dask is None:
        yield None
        return
    client, own = _client(dask)
    try:
        yield client
    finally:
        if own:
            client.close()


def _client(dask: Any):
    from distributed import Client

    if isinstance(dask, Client):
        return dask, False
    if not isinstance(dask, str):
        raise UsageError(f"dask must be a distributed.Client or a scheduler address, not {type(dask).__name__}")
    try:
        return Client(dask, set_as_default=False), True  # waits distributed.comm.timeouts.connect (30 s)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {dask}: {exc}") from None


def _run_on(client, units: list[Unit]) -> list[UnitResult]:
    run = uuid.uuid4().hex[:8]
    futures = client.map(run_unit_retrying, units, key=[f"warmstart-unit-{run}-{u.index}" for u in units],
                         pure=False)
    try:
        # Waits for all of them: none may still be writing a part when the caller rolls back.
        results = client.gather(futures, errors="skip")
        failed = [f for f in futures if f.status != "finished"]
        if failed:
            log.error("%d of %d units failed", len(failed), len(units))
            raise unit_error(failed[0].exception(), units[futures.index(failed[0])])
        return results
    finally:
        client.cancel(futures)


def unit_error(exc: BaseException, unit: Unit) -> BaseException:
    """A unit's error as warmstart's: the workers that ran it all lost (killed, out of memory) is a
    :class:`StorageError`; the unit's own errors are typed already (returned as they are). The flow's units
    (on Prefect's Dask task runner) fail the same way."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return StorageError(f"unit {unit.index} of {unit.count} of the sharded output {unit.output}: every Dask worker "
                            f"that ran it died (killed, or out of memory?); nothing was published: {exc}")
    return exc
