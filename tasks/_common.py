"""What the warm-start tasks share: the retry policy and the stage log line."""

from __future__ import annotations

import os
import time
from typing import Any

from prefect.tasks import exponential_backoff

from warmstart.storage import is_transient

__all__ = ["IO_RETRY", "retry_on_transient", "log_stage"]


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
