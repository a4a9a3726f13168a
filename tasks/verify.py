"""Verify task: the parity certificate of the staged output, before anything is uploaded."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CachedTensors, CheckpointCache
from warmstart.errors import CertificateError
from warmstart.planning import Plan
from warmstart.verification import VerifyMode

from ._common import DATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block
from .validate import plan_rows

__all__ = ["verify"]


@task(name="verify", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=DATA_TIMEOUT)
def verify(plan: Plan, index: CachedIndex, tensors: CachedTensors, target: str, staging: str,
           credentials_block: CredentialsRef = None, mode: VerifyMode = "fail", cache_dir: str | None = None,
           sources: dict[str, CachedIndex] | None = None, source_tensors: dict[str, CachedTensors] | None = None,
           output: str | None = None) -> dict[str, Any]:
    """Certify the staged output of ``plan`` (source and target layers, declared pairs, remapped rows, on seeded
    probes), write the certificate (naming ``output``, where it is to be published) into its manifest and publish
    it as the ``warm-start-certificate`` table artifact; TF work happens in this (the flow's) thread. Raises
    :class:`CertificateError` when it fails and ``mode`` is ``fail``: the run then uploads nothing. Returns the
    certificate's JSON."""
    started = time.perf_counter()
    certificate = CheckpointCache(cache_dir).certify(plan, index, tensors, target, staging,
                                                     storage_options_from_block(credentials_block), sources,
                                                     source_tensors, output)
    create_table_artifact(key="warm-start-certificate", table=certificate.rows(),
                          description=f"Parity certificate of plan {plan.digest[:12]}: {certificate.summary()}")
    create_table_artifact(key="warm-start-plan", table=plan_rows(plan.to_json(), certificate.variable_status()),
                          description=f"Warm-start plan (digest {plan.digest}) with what the certificate says of each "
                                      f"variable: {plan.summary()}")
    log_stage(started, "%s", certificate.summary())
    if not certificate.passed:
        if mode == "fail":
            raise CertificateError(certificate.failure_message(), certificate)
        get_run_logger().warning("%s (verify: warn: the output is published all the same)", certificate.summary())
    return certificate.to_json()
