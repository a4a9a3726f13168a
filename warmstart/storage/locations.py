"""Resolving URLs to fsspec filesystems, and checkpoint URLs to checkpoint prefixes.

Every path a user gives goes through :func:`resolve` once; the rest of the engine passes
``(fs, path)`` pairs around. A directory resolves to its latest checkpoint through the
``checkpoint`` state file, which may never point outside that directory.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from ..errors import CorruptCheckpointError, InputNotFoundError, StorageError, UsageError, WarmStartError

__all__ = [
    "Location", "resolve", "resolve_checkpoint", "read_bytes", "read_range", "object_size", "is_transient",
    "STATE_FILE",
]

STATE_FILE = "checkpoint"

MAX_STATE_FILE_BYTES = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A path on a filesystem, and the URL a user would write for it."""

    fs: fsspec.AbstractFileSystem
    path: str

    @property
    def url(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    @property
    def is_local(self) -> bool:
        """On this machine's filesystem (``path`` is then an OS path)."""
        protocol = self.fs.protocol
        return bool({"file", "local"} & set((protocol,) if isinstance(protocol, str) else protocol))

    def child(self, name: str) -> "Location":
        return Location(self.fs, posixpath.join(self.path, name) if self.path else name)

    @property
    def parent(self) -> "Location":
        return Location(self.fs, posixpath.dirname(self.path))

    def with_suffix(self, suffix: str) -> "Location":
        return Location(self.fs, self.path + suffix)


def resolve(url: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Location:
    """Turn a URL or local path (``str`` or ``os.PathLike``) into a :class:`Location`; raises
    :class:`UsageError` for unknown protocols."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise UsageError(f"expected a URL or path, received: {url!r}")
    try:
        fs, path = url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise UsageError(f"cannot open {url!r}: {exc}") from None
    return Location(fs, path.rstrip("/") or path)


def _exists(loc: Location) -> bool:
    try:
        return loc.fs.exists(loc.path)
    except (OSError, PermissionError) as exc:
        raise StorageError(f"cannot access {loc.url}: {exc}", is_transient(exc)) from None


def _is_dir(loc: Location) -> bool:
    try:
        return loc.fs.isdir(loc.path)
    except (OSError, PermissionError) as exc:
        raise StorageError(f"cannot access {loc.url}: {exc}", is_transient(exc)) from None


_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)


def _state_file_prefix(directory: Location, text: str) -> Location:
    match = _STATE_LINE.search(text)
    state_url = directory.child(STATE_FILE).url
    if not match:
        raise InputNotFoundError(f"{state_url} names no model_checkpoint_path: the directory holds no finished checkpoint")
    named = match.group(1).encode("latin-1", "backslashreplace").decode("unicode_escape")
    if posixpath.isabs(named) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", named):
        # TF1 Saver writes absolute paths; after a copy (say, an upload) only the base name is
        # still meaningful, and reading it inside this directory never leaves the directory.
        base = posixpath.basename(named.rstrip("/"))
        candidate = directory.child(base)
        if not _exists(candidate.with_suffix(".index")):
            raise InputNotFoundError(
                f"{state_url} points outside its directory ({named!r}) and {base!r} is not in "
                f"{directory.url}: refusing to follow it. Pass the checkpoint prefix explicitly."
            )
        return candidate
    normalized = posixpath.normpath(named)
    if normalized.startswith("..") or "/" in normalized:
        raise InputNotFoundError(
            f"{state_url} points outside its directory ({named!r}): refusing to follow it. "
            "Pass the checkpoint prefix explicitly."
        )
    return directory.child(normalized)


def resolve_checkpoint(url: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Location:
    """Resolve a checkpoint URL to its prefix (``.../model.ckpt-1000``, without ``.index``).

    Accepts a prefix, a ``.index`` path, or a directory with a ``checkpoint`` state file.
    Raises :class:`InputNotFoundError` when no checkpoint is there.
    """
    loc = resolve(url, storage_options)
    if loc.path.endswith(".index"):
        loc = Location(loc.fs, loc.path[: -len(".index")])
    if _exists(loc.with_suffix(".index")):
        return loc
    if _is_dir(loc):
        state = loc.child(STATE_FILE)
        if _exists(state):
            if object_size(state) > MAX_STATE_FILE_BYTES:  # TF writes a few lines; never read a huge one
                raise CorruptCheckpointError(f"{state.url} is {object_size(state)} bytes: not a checkpoint state file")
            prefix = _state_file_prefix(loc, read_bytes(state).decode("utf-8", "replace"))
            if not _exists(prefix.with_suffix(".index")):
                raise InputNotFoundError(f"{state.url} names {prefix.url}, but {prefix.url}.index does not exist")
            return prefix
        return _only_checkpoint(loc)
    raise InputNotFoundError(f"no checkpoint at {loc.url}: neither {loc.url}.index nor a directory exists")


def _only_checkpoint(directory: Location) -> Location:
    """A directory without a state file (what ``tf.train.Checkpoint.write`` leaves): its one checkpoint."""
    found = sorted(p for p in directory.fs.ls(directory.path, detail=False) if p.endswith(".index"))
    if len(found) == 1:
        prefix = Location(directory.fs, found[0][: -len(".index")])
        log.warning("%s has no '%s' state file; using its only checkpoint %s", directory.url, STATE_FILE, prefix.url)
        return prefix
    if not found:
        raise InputNotFoundError(f"{directory.url} holds no checkpoint (no '{STATE_FILE}' state file, no .index file)")
    names = ", ".join(posixpath.basename(p)[: -len(".index")] for p in found[:10])
    raise InputNotFoundError(
        f"{directory.url} has no '{STATE_FILE}' state file and {len(found)} checkpoints ({names}"
        f"{', ...' if len(found) > 10 else ''}): pass the prefix of the one to use"
    )


def read_bytes(loc: Location, limit: Any = None) -> bytes:
    """The whole object, a regular file within ``limit`` (a :class:`~.bounded.Limit`; default: the
    metadata files' limit); raises :class:`InputNotFoundError`, :class:`InputLimitError` or :class:`StorageError`."""
    from .bounded import METADATA_BYTES, read_limited

    return read_limited(loc, limit or METADATA_BYTES)


def read_range(loc: Location, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the object."""
    try:
        return loc.fs.cat_file(loc.path, start=start, end=end)
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except (OSError, PermissionError) as exc:
        raise StorageError(f"cannot read {loc.url} bytes {start}..{end}: {exc}", is_transient(exc)) from None


def object_size(loc: Location) -> int:
    """The size in bytes of the regular file (object) at ``loc``; raises :class:`InputNotFoundError`,
    :class:`InputLimitError` (a FIFO, device, directory: nothing is opened) or :class:`StorageError`."""
    from .bounded import require_regular_file

    return require_regular_file(loc)


# What retrying can fix: throttling, server-side 5xx, dropped or timed-out connections.
_TRANSIENT_TYPES = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ServerDisconnectedError", "ClientConnectorError", "ClientOSError", "ClientPayloadError",
    "ServerTimeoutError", "TransportError", "RetryError", "ProtocolError", "IncompleteRead",
}
_TRANSIENT_MARKERS = (
    "SlowDown", "Throttl", "RequestTimeout", "ServiceUnavailable", "InternalError", "Too Many Requests",
    "Service Unavailable", "Bad Gateway", "Gateway Timeout", "Connection reset", "timed out",
    " 429", " 500", " 502", " 503", " 504", "(429)", "(500)", "(502)", "(503)", "(504)",
)


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) is a storage failure that a retry may fix.

    Validation, missing inputs, corrupt data and permission problems are never transient.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StorageError):
            return exc.transient
        if isinstance(exc, (WarmStartError, FileNotFoundError, PermissionError, ValueError)):
            return False
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in _TRANSIENT_TYPES:
            return True
        text = f" {exc}"
        if any(marker in text for marker in _TRANSIENT_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
