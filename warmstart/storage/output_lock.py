"""One run at a time per output: the ``.warmstart-incomplete`` marker is also the output's lock.

A run creates the marker before it writes anything and removes it after the manifest; the marker
names its holder (run id, host, process id and that process's start time, start, last heartbeat).

* Locally the marker is held with ``flock`` for the whole run: the kernel lets it go when the process
  ends, however it ends, so a marker nobody holds is a dead run's, and a held one a live run's.
* On object stores the marker is created only if absent (S3 ``If-None-Match: *``, GCS
  ``ifGenerationMatch=0``: fsspec's ``mode="create"``) and its heartbeat is rewritten every
  ``lease / 4`` seconds. A marker is a dead run's when its process is gone (same host: the process id
  with the same start time no longer runs) or when its heartbeat is older than the lease (another
  host); only then is it taken over (S3: replaced only if unchanged, ``If-Match``).

A second run into a held output fails at once with :class:`OutputBusyError` naming the holder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import OutputBusyError, StorageError
from .locations import Location, is_transient

__all__ = ["Holder", "OutputLock", "live_holder", "lease_seconds", "refuse_if_held"]

_RETRIES = 40  # x 25 ms: a holder that is starting (its marker not written yet), or a probe's brief hold


def lease_seconds() -> float:
    """How long an object-store marker's heartbeat stays good (``WARMSTART_LEASE_SECONDS``, default 120)."""
    try:
        return max(4.0, float(os.environ.get("WARMSTART_LEASE_SECONDS", "120")))
    except ValueError:
        return 120.0


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _host() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it on POSIX (without importing ``socket``)."""
    return os.uname().nodename


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds an output: written into its marker."""

    run: str
    host: str
    pid: int
    pid_start: str | None
    started: str
    heartbeat: float

    @classmethod
    def me(cls, run: str | None = None) -> "Holder":
        now = time.time()
        return cls(run or uuid.uuid4().hex, _host(), os.getpid(), _process_start(os.getpid()),
                   _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds"), now)

    @classmethod
    def parse(cls, data: bytes) -> "Holder | None":
        """The holder a marker names; None for a marker without one (an older warmstart's, or half written)."""
        try:
            doc = json.loads(data)
            return cls(str(doc["run"]), str(doc["host"]), int(doc["pid"]), doc.get("pid_start"), str(doc["started"]),
                       float(doc["heartbeat"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    def alive(self, lease: float) -> bool:
        """Whether the holder still runs: its process on this host, or its heartbeat elsewhere."""
        if self.host == _host():
            return self.pid_start is not None and _process_start(self.pid) == self.pid_start
        return time.time() - self.heartbeat < lease

    def describe(self) -> str:
        ago = max(0, int(time.time() - self.heartbeat))
        return f"run {self.run[:8]}, process {self.pid} on host {self.host}, started {self.started}, last heard {ago} s ago"


def _busy(loc: Location, holder: Holder | None) -> OutputBusyError:
    who = holder.describe() if holder else "a run that is starting"
    return OutputBusyError(f"output {loc.url} is being written by another warmstart run ({who}): wait for it to "
                           "finish, or choose another output")


class OutputLock:
    """The marker of ``directory``, held by this run (:meth:`acquire`) until :meth:`release`."""

    def __init__(self, marker: Location, holder: Holder, existed: bool):
        self.marker, self.holder, self.existed = marker, holder, existed
        self._fd: int | None = None
        self._token: str | None = None  # the marker's ETag on S3 (what a heartbeat replaces)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost: str | None = None  # why the lease was lost (another run took the output over)

    @classmethod
    def acquire(cls, marker: Location) -> "OutputLock":
        """Hold the output whose marker is ``marker``; :class:`OutputBusyError` when a live run holds it."""
        lock = cls(marker, Holder.me(), existed=False)
        try:
            if marker.is_local:
                lock._acquire_local()
            else:
                lock._acquire_remote()
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot lock output marker {marker.url}: {exc}", is_transient(exc)) from None
        return lock

    # ---------------------------------------------------------------- local: flock

    def _acquire_local(self) -> None:
        path = self.marker.path
        for _ in range(_RETRIES):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                self.existed = False
            except FileExistsError:
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
                self.existed = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Holder.parse(_read_fd(fd))
                os.close(fd)
                if holder is not None and holder.alive(float("inf")):
                    raise _busy(self.marker.parent, holder) from None
                time.sleep(0.025)  # starting (nothing written yet), or a probe's brief hold
                continue
            if not _same_file(fd, path):  # removed or replaced while we waited: that marker is gone
                os.close(fd)
                continue
            self._fd = fd
            data = self.holder.to_bytes()  # named at once: a run that meets it can say who holds the output
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return
        raise _busy(self.marker.parent, Holder.parse(_read_path(path)))

    # ---------------------------------------------------------------- object stores: create-if-absent + lease

    def _acquire_remote(self) -> None:
        lease = lease_seconds()
        for _ in range(_RETRIES):
            if self._create():
                break
            data = _read_path_remote(self.marker)
            if data is None:  # released between our create and read: try again
                continue
            holder = Holder.parse(data)
            if holder is not None and holder.alive(lease):
                raise _busy(self.marker.parent, holder)
            if holder is None and time.time() - _modified(self.marker) < 2.0:
                time.sleep(0.025)  # just created by a run that has not named itself yet
                continue
            if self._take_over():
                self.existed = True
                break
            time.sleep(0.025)
        else:
            raise _busy(self.marker.parent, Holder.parse(_read_path_remote(self.marker) or b""))
        self._beat = threading.Thread(target=self._heartbeat, args=(lease / 4,), daemon=True,
                                      name=f"warmstart-lease {self.marker.url}")
        self._beat.start()

    def _create(self) -> bool:
        try:
            out = self.marker.fs.pipe_file(self.marker.path, self.holder.to_bytes(), mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.EINVAL and "Precondition" in str(exc):  # 412 without its condition named
                return False
            raise
        self._token = _etag(out)
        return True

    def _take_over(self) -> bool:
        """Replace a dead run's marker (only if unchanged, where the store can say so)."""
        token = _remote_etag(self.marker)
        try:
            self._put(self.holder.to_bytes(), token)
        except (FileNotFoundError, FileExistsError):
            return False
        except OSError as exc:
            if "Precondition" in str(exc) or exc.errno == errno.EINVAL:
                return False
            raise
        return True

    def _put(self, data: bytes, token: str | None) -> None:
        """Write the marker: on S3 only if it still is version ``token`` (``If-Match``)."""
        fs = self.marker.fs
        if token is not None and _protocol(fs) == "s3":
            bucket, key, _ = fs.split_path(self.marker.path)
            out = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=token)
            fs.invalidate_cache(self.marker.path)
            self._token = _etag(out)
        else:
            self._token = _etag(fs.pipe_file(self.marker.path, data))

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            mine = Holder.parse(_read_path_remote(self.marker) or b"")
            if mine is None or mine.run != self.holder.run:
                self.lost = f"another run took output marker {self.marker.url} over ({mine.describe() if mine else 'gone'})"
                return
            try:
                self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
                self._put(self.holder.to_bytes(), self._token)
            except OSError:
                continue  # a transient failure: the lease is long enough for the next beat

    # ---------------------------------------------------------------- both

    def check(self) -> None:
        """Raise :class:`StorageError` when the run no longer holds its output (another run took it over)."""
        if self.lost:
            raise StorageError(f"the run lost its output: {self.lost}")

    def release(self, remove: bool) -> None:
        """Stop holding the output; ``remove``: delete the marker first (the output is published or rolled back)."""
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=30)
        try:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    if self._fd is not None:
                        os.unlink(self.marker.path)
                    else:
                        self.marker.fs.rm(self.marker.path)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def live_holder(marker: Location) -> Holder | None:
    """The live run holding the output of ``marker`` (a :class:`Holder`); None when the marker is
    absent or a dead run's. Nothing is created, and a held lock is never taken."""
    if marker.is_local:
        try:
            fd = os.open(marker.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return Holder.parse(_read_fd(fd)) or Holder("?", "?", 0, None, "?", time.time())  # starting
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
    data = _read_path_remote(marker)
    holder = Holder.parse(data) if data is not None else None
    if holder is not None and holder.alive(lease_seconds()):
        return holder
    return None


def refuse_if_held(marker: Location) -> None:
    """Raise :class:`OutputBusyError` naming the live run that holds the output of ``marker``, if one does."""
    holder = live_holder(marker)
    if holder is not None:
        raise _busy(marker.parent, holder if holder.run != "?" else None)


def _read_fd(fd: int) -> bytes:
    return os.pread(fd, 1 << 16, 0)


def _read_path(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except OSError:
        return b""


def _read_path_remote(marker: Location) -> bytes | None:
    try:
        marker.fs.invalidate_cache(marker.path)
        return marker.fs.cat_file(marker.path, start=0, end=1 << 16)
    except FileNotFoundError:
        return None


def _modified(marker: Location) -> float:
    try:
        info = marker.fs.info(marker.path)
    except FileNotFoundError:
        return 0.0
    for key in ("LastModified", "updated", "mtime", "created"):
        value = info.get(key)
        if isinstance(value, _dt.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def _remote_etag(marker: Location) -> str | None:
    try:
        marker.fs.invalidate_cache(marker.path)
        info = marker.fs.info(marker.path)
    except FileNotFoundError:
        return None
    return info.get("ETag") or info.get("etag")


def _etag(out: Any) -> str | None:
    return out.get("ETag") if isinstance(out, dict) else None


def _protocol(fs: Any) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
