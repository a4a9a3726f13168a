"""What the warm-start tasks share: the retry policy and the stage log line."""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from typing import Any

from prefect.tasks import exponential_backoff

from warmstart.errors import WarmStartError
from warmstart.storage import is_transient

__all__ = ["IO_RETRY", "retry_on_transient", "log_stage", "METADATA_TIMEOUT", "DATA_TIMEOUT", "FLOW_TIMEOUT",
           "ExpectedFailureLogs", "quiet_expected_failures"]


def _seconds(variable: str, default: float) -> float | None:
    """A timeout from the environment (read when the tasks are imported: set it in the worker's or the
    deployment's environment); 0 means none."""
    value = float(os.environ.get(variable, default))
    return value if value > 0 else None


# A hung storage call (a stalled connection, a server that never answers) fails its task instead of holding
# the run (and its output's lock) forever. Index and plan work reads metadata only; data tasks scale with the
# model (6 h is 1 TB at 50 MB/s). A timed-out task is not retried: its time budget is spent.
METADATA_TIMEOUT = _seconds("WARMSTART_METADATA_TIMEOUT_SECONDS", 30 * 60)
DATA_TIMEOUT = _seconds("WARMSTART_DATA_TIMEOUT_SECONDS", 6 * 3600)
FLOW_TIMEOUT = _seconds("WARMSTART_FLOW_TIMEOUT_SECONDS", 24 * 3600)


def log_stage(started: float, message: str, *args: Any) -> None:
    """One line in the run's logs (the Logs tab): what the stage did, with its seconds."""
    from prefect import get_run_logger

    get_run_logger().info(message + " (%.2f s)", *args, time.perf_counter() - started)


def retry_on_transient(task, task_run, state) -> bool:
    """Retry only what a retry can fix: throttling, 5xx, dropped connections, storage timeouts (not the
    task's own time limit)."""
    from prefect.task_engine import TaskRunTimeoutError

    try:
        state.result()
    except TaskRunTimeoutError:
        return False
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


class ExpectedFailureLogs(logging.Filter):
    """An expected failure (a :class:`WarmStartError`: a plan the rules refuse, a missing input, a busy output) is
    said once in a run's logs, in one line: the task that failed says what and why, without a traceback; the
    flow's repetition of the same exception is dropped, and the "Finished in state Failed(...)" lines do not
    repeat the message. Unexpected errors keep their tracebacks. Records it rewrote carry
    ``warmstart_expected`` (the CLI, which prints the failure itself, keeps them off its console)."""

    _STATE = re.compile(r"^Finished in state Failed\((.*)\)$", re.S)

    def __init__(self) -> None:
        super().__init__()
        self._said: weakref.WeakSet[BaseException] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, WarmStartError):
            if exc in self._said:
                return False  # the flow re-raising what a task already said
            self._said.add(exc)
            record.msg, record.args = f"failed: {type(exc).__name__}: {exc}", ()
            record.exc_info, record.exc_text, record.warmstart_expected = None, None, True
            return True
        state = self._STATE.match(record.getMessage())
        if state and any(f"{name}: " in state.group(1) for name in _expected_names()):
            record.msg, record.args, record.warmstart_expected = "Finished in state Failed (said above)", (), True
        return True


def _expected_names() -> set[str]:
    """The names of every WarmStartError class (as Prefect's state messages spell them)."""
    found, todo = set(), [WarmStartError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


_FILTER = ExpectedFailureLogs()


def quiet_expected_failures() -> None:
    """Install :class:`ExpectedFailureLogs` on Prefect's run loggers (every handler: console and API), once per
    process: the flows' package does it wherever the flow is loaded (the CLI, workers, serve)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
