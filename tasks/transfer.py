"""Transfer task: execute the plan from the local sparse copy into a local staging directory."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CachedTensors, CheckpointCache
from warmstart.planning import Plan

from ._common import DATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["transfer"]


class _ProgressArtifact:
    """Updates a progress artifact at most every ``interval`` seconds (each update is an API call)."""

    def __init__(self, interval: float = 1.0):
        self.artifact_id = create_progress_artifact(progress=0.0, key="warm-start-progress",
                                                    description="bytes copied into the warm-started checkpoint")
        self.interval = interval
        self.last = 0.0

    def __call__(self, done: int, total: int, name: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval or done >= total:
            self.last = now
            update_progress_artifact(self.artifact_id, 100.0 * done / total if total else 100.0,
                                     description=f"copied {done:,} of {total:,} bytes (last: {name})")

    def finish(self, bytes_read: int, bytes_written: int) -> None:
        """100%, with the bytes the transfer really read and wrote (some strategies report no progress)."""
        update_progress_artifact(self.artifact_id, 100.0,
                                 description=f"done: {bytes_read:,} bytes read, {bytes_written:,} bytes written")


@task(name="transfer", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=DATA_TIMEOUT)
def transfer(plan: Plan, index: CachedIndex, tensors: CachedTensors, target: str, staging: str,
             credentials_block: CredentialsRef = None, cache_dir: str | None = None,
             sources: dict[str, CachedIndex] | None = None,
             source_tensors: dict[str, CachedTensors] | None = None) -> dict[str, Any]:
    """Execute the validated ``plan`` exactly (no planning again: an input that changed since fails the task,
    nothing staged); TF work happens in this (the flow's) thread. Returns the report JSON.
    ``sources``/``source_tensors``: the named sources' cached index and tensor records, by name."""
    started = time.perf_counter()
    progress = _ProgressArtifact()
    report = CheckpointCache(cache_dir).transfer(
        plan, index, tensors, target, staging, storage_options_from_block(credentials_block), sources=sources,
        source_tensors=source_tensors, progress=progress, overwrite=True)
    progress.finish(report.bytes_read, report.bytes_written)
    log_stage(started, "strategy %s: %d variables written, %s bytes read, %s bytes written", report.strategy,
              len(report.plan.transferred), f"{report.bytes_read:,}", f"{report.bytes_written:,}")
    return report.to_json()
