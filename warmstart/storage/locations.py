"""Resolving URLs to fsspec filesystems; reading objects whole or by byte range; which storage errors a retry
may fix.

Every path a user gives goes through :func:`resolve` once; the rest of the engine passes
``(fs, path)`` pairs around. Local paths get :data:`~.localfs.LOCAL` (fsspec's interface without importing
fsspec); fsspec is imported for the first URL of another filesystem. (Which checkpoint a URL names is the format's business:
:mod:`warmstart.formats.bundle.directory`.)
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputNotFoundError, StorageError, UsageError, WarmStartError
from .localfs import LOCAL, local_path

if TYPE_CHECKING:
    import fsspec

__all__ = ["Location", "resolve", "read_bytes", "read_range", "object_size", "is_transient"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A path on a filesystem, and the URL a user would write for it."""

    fs: fsspec.AbstractFileSystem  # or LOCAL, with the same interface
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
    path = None if storage_options else local_path(url)
    if path is not None:
        return Location(LOCAL, path)
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise UsageError(f"cannot open {url!r}: {exc}") from None
    return Location(fs, path.rstrip("/") or path)


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
