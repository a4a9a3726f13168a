"""Running h5py over an untrusted file in a child process, so that a crash is an error, not our end.

HDF5's C library trusts a file's structure: a few flipped bytes can make it read out of bounds and
kill the process (``tests/test_keras_files.py`` finds such files in a few hundred random mutations of
a real ``.weights.h5``). Reading the structure in a forked child turns that into a
:class:`CorruptCheckpointError`; the child sees the parent's memory (``memory://`` files too) and
opens its own connections (fsspec makes new filesystem instances and event loops after a fork).
Forking costs a few milliseconds; where there is no ``fork`` (Windows, macOS) the work runs in process.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import CorruptCheckpointError

__all__ = ["isolated", "TIMEOUT_SECONDS"]

T = TypeVar("T")
TIMEOUT_SECONDS = 600.0  # HDF5 reading a huge file's structure from a slow store; never forever
# ... but its CPU time is small (BERT-base's structure: 0.1 s); a damaged global heap makes HDF5 loop
# without reading (a seeded .keras mutation in tests/test_keras_files.py): the kernel stops that child
CPU_SECONDS = 15
_FORK = sys.platform.startswith("linux") and hasattr(os, "fork")


def isolated(work: Callable[..., T], *args: Any, what: str, timeout: float = TIMEOUT_SECONDS) -> T:
    """``work(*args)`` in a forked child: its result, or the exception it raised, or a
    :class:`CorruptCheckpointError` naming ``what`` when the child dies or overruns ``timeout``."""
    if not _FORK:
        return work(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(work, args, write_end)
    os.close(write_end)
    data = None
    try:
        data = _read_all(read_end, time.monotonic() + timeout)
    finally:
        os.close(read_end)
        if data is None:  # overran the deadline, or we were interrupted: the child must not live on
            _kill(pid)
        status = os.waitpid(pid, 0)[1]
    if data is None:
        raise CorruptCheckpointError(f"reading {what} did not finish within {timeout:.0f} s")
    if os.WIFSIGNALED(status) or not data:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise CorruptCheckpointError(f"{what} is damaged: the HDF5 library ran for over {CPU_SECONDS} s of "
                                         "CPU reading its structure")
        name = signal.Signals(sig).name if sig else f"exit status {os.WEXITSTATUS(status)}"
        raise CorruptCheckpointError(f"{what} is damaged: the HDF5 library crashed reading it ({name})")
    ok, value = pickle.loads(data)
    if ok:
        return value
    raise value


def _child(work: Callable[..., Any], args: tuple[Any, ...], write_end: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 5))  # SIGXCPU, then SIGKILL
    try:
        try:
            result = (True, work(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
            result = (False, exc)
        try:
            data = pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001 - an unpicklable exception: say what it was
            data = pickle.dumps((False, CorruptCheckpointError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
    finally:
        os._exit(0)


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None when the deadline passes."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
