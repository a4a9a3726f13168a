"""The CLI's view of a running transfer: the progress bar on the terminal, and flow mode (``transfer`` through
the Prefect warm-start flow: the configured API checked first, the flow run's page named as it starts, expected
failures said once by the command, not as Prefect's tracebacks)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import StorageError, UsageError, WarmStartError

__all__ = ["TEMPORARY", "prefect_api_configured", "progress_bar", "transfer_with_flow"]


def prefect_api_configured() -> bool:
    return _prefect_api_url() is not None


def _prefect_api_url() -> str | None:
    """The Prefect API to report to: ``PREFECT_API_URL`` in the environment or in the active Prefect
    profile (read from ``profiles.toml`` without importing Prefect, which takes seconds); None: none."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    try:
        doc = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active", "ephemeral")
    return doc.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None


def _check_prefect_api(url: str | None) -> None:
    """Raise :class:`StorageError` (exit 4) when the configured Prefect API does not answer its health
    check: one line with a hint, before Prefect is imported (it would end in a long traceback)."""
    if url is None:
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as response:
            response.read(1024)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"the Prefect API at {url} does not answer ({reason}): start it, point PREFECT_API_URL "
                           "at a running server, or run the engine here with --no-prefect") from None


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress callback drawing bytes, rate and ETA on the terminal (stderr); None when not a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("copying"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("copy", total=None)
        yield lambda done, total, name: bar.update(task, completed=done, total=total)


class _ExpectedFailureFilter(logging.Filter):
    """Drops console records of an expected warmstart failure (the flows' log filter marks them): the command
    prints that failure as one line itself. Records still reach the Prefect API."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, WarmStartError) or getattr(record, "warmstart_expected", False))


def _quiet_expected_tracebacks() -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(_ExpectedFailureFilter())


def transfer_with_flow(args: argparse.Namespace) -> dict:
    """Run the Prefect warm-start flow (an ephemeral API unless PREFECT_API_URL is set); the engine
    itself never imports Prefect, only this command does. The flow runs in this process: the progress bar
    follows its transfer task, and the flow run's page is named as soon as the run starts."""
    if args.sources:
        raise UsageError("--source is for runs of the engine in this process (--no-prefect); to run the flow, "
                         "declare the sources under 'sources:' in the rules file")
    _check_prefect_api(_prefect_api_url())
    from warmstart.flows.warm_start import warm_start
    from warmstart.tasks.transfer import progress_listeners

    from .formats import CHECKPOINT_NAME
    from .storage import resolve

    _quiet_expected_tracebacks()
    bar = not args.json and sys.stderr.isatty() and not args.shards
    with progress_bar(enabled=bar) as progress, _flow_run_link(enabled=not args.json):
        progress_listeners.extend([progress] if progress else [])
        try:
            summary = warm_start(source=args.source, target=args.target, output=args.output, rules_url=args.rules,
                                 strategy=args.strategy, overwrite=args.overwrite, shards=args.shards,
                                 dask_address=args.dask, verify=args.verify or "off")
        finally:
            if progress:
                progress_listeners.remove(progress)
    out = resolve(summary["output"])
    return {**summary["plan"], "strategy": summary["strategy"], "output": out.url,
            "checkpoint": out.child(CHECKPOINT_NAME).url, "manifest": summary["manifest"],
            "keras_weights": summary.get("keras_weights"),
            "bytes_read": summary["bytes_read"], "bytes_written": summary["bytes_written"],
            "seconds": summary["seconds"], "unchecked": summary.get("unchecked", []),
            "verify": summary.get("verify"), "flow_run": summary.get("flow_run"),
            "flow_run_url": summary.get("flow_run_url")}


TEMPORARY = " (on Prefect's temporary server, gone with this command)"


class _FlowRunLink(logging.Handler):
    """Prints the flow run's page (Prefect logs "View at <url>" as the run begins) on stderr, once."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.shown = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not self.shown and message.startswith("View at "):
            self.shown = True
            print(f"warmstart: flow run {message[len('View at '):]}", file=sys.stderr)


@contextlib.contextmanager
def _flow_run_link(enabled: bool) -> Iterator[None]:
    logger = logging.getLogger("prefect.flow_runs")
    handler = _FlowRunLink()
    if enabled:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
