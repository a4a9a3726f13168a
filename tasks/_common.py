"""What the warm-start tasks share: the retry policy and storage credentials from Prefect blocks."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from prefect.tasks import exponential_backoff

from warmstart.errors import UsageError
from warmstart.storage import is_transient

__all__ = ["IO_RETRY", "retry_on_transient", "storage_options_from_block", "log_stage"]


def log_stage(started: float, message: str, *args: Any) -> None:
    """One line in the run's logs (the Logs tab): what the stage did, with its seconds."""
    from prefect import get_run_logger

    get_run_logger().info(message + " (%.2f s)", *args, time.perf_counter() - started)


def retry_on_transient(task, task_run, state) -> bool:
    """Retry only what a retry can fix: throttling, 5xx, dropped connections, timeouts."""
    try:
        state.result()
    except Exception as exc:  # the task's own failure, re-raised by the state; classified, not swallowed
        return is_transient(exc)
    return False


def _retry_base_seconds() -> float:
    # Tests set a small base; production waits 2 s, 4 s, 8 s (plus jitter) between attempts.
    return float(os.environ.get("WARMSTART_RETRY_BASE_SECONDS", "2"))


IO_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=_retry_base_seconds()),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_transient,
}


def storage_options_from_block(reference: str | None) -> dict[str, Any] | None:
    """fsspec storage options from a Prefect block reference, loaded inside the task that needs them.

    ``secret/NAME``: a ``Secret`` holding a JSON object of fsspec storage options;
    ``aws-credentials/NAME`` (prefect-aws) and ``gcp-credentials/NAME`` (prefect-gcp).
    ``None``: the environment's default credentials (AWS_*, GOOGLE_APPLICATION_CREDENTIALS...).
    """
    if not reference:
        return None
    kind, _, name = reference.partition("/")
    if not name:
        raise UsageError(f"credentials block {reference!r}: expected 'secret/NAME', 'aws-credentials/NAME' "
                         "or 'gcp-credentials/NAME'")
    if kind == "secret":
        from prefect.blocks.system import Secret

        value = Secret.load(name).get()
        options = json.loads(value) if isinstance(value, str) else value
        if not isinstance(options, dict):
            raise UsageError(f"secret {name!r} must hold a JSON object of storage options")
        return options
    if kind == "aws-credentials":
        from prefect_aws import AwsCredentials

        creds = AwsCredentials.load(name)
        options: dict[str, Any] = {"key": creds.aws_access_key_id,
                                   "secret": creds.aws_secret_access_key.get_secret_value()
                                   if creds.aws_secret_access_key else None}
        if creds.aws_session_token:
            options["token"] = creds.aws_session_token
        client_kwargs = {k: v for k, v in {"region_name": creds.region_name,
                                            "endpoint_url": creds.aws_client_parameters.endpoint_url}.items() if v}
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        return options
    if kind == "gcp-credentials":
        from prefect_gcp import GcpCredentials

        creds = GcpCredentials.load(name)
        info = creds.service_account_info.get_secret_value() if creds.service_account_info else None
        return {"token": info or creds.service_account_file, "project": creds.project}
    raise UsageError(f"credentials block {reference!r}: unknown block type {kind!r}")
