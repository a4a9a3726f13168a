"""Reading untrusted inputs within limits: regular files only, sizes capped, nesting bounded.

Every small input warmstart reads whole (rules, vocabularies, a Keras ``config.json``, checkpoint
indexes, state files, ``.weights.json`` shard indexes, signatures, manifests) goes through
:func:`read_limited`: the object must be a regular file (no FIFO, device, directory or ``/proc``
file: checked with ``stat``/``info`` before it is opened, so nothing blocks), no larger than its
:class:`Limit`, and at most that many bytes are read even when a file grows or lies about its size.
Each limit can be raised with its environment variable (README, *Guarantees*).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InputLimitError, InputNotFoundError, StorageError
from .locations import Location, is_transient

__all__ = ["Limit", "LIMITS", "read_limited", "require_regular_file", "check_nesting", "limit_value", "RULES_BYTES",
           "RULES_ENTRIES", "VOCAB_BYTES", "CONFIG_BYTES", "NESTING", "INDEX_BYTES", "METADATA_BYTES", "MEMBER_BYTES",
           "COMPRESSION_RATIO"]

# Pseudo-filesystems whose files say "regular, 0 bytes" and then produce any amount of data.
_PSEUDO_ROOTS = ("/proc/", "/sys/")


@dataclass(frozen=True, slots=True)
class Limit:
    """A bound on one kind of input: ``what`` it bounds, its ``default``, the environment variable
    that overrides it."""

    what: str
    env: str
    default: int

    @property
    def value(self) -> int:
        return limit_value(self)

    def words(self, unit: str = "bytes") -> str:
        return f"{self.value:,} {unit} ({self.env})"


RULES_BYTES = Limit("rules file", "WARMSTART_MAX_RULES_BYTES", 2 << 20)
RULES_ENTRIES = Limit("rules entries (patterns, renames, transforms, fill_from)", "WARMSTART_MAX_RULES_ENTRIES", 10_000)
VOCAB_BYTES = Limit("vocabulary file", "WARMSTART_MAX_VOCAB_BYTES", 256 << 20)
CONFIG_BYTES = Limit("Keras config.json", "WARMSTART_MAX_CONFIG_BYTES", 64 << 20)
NESTING = Limit("JSON/YAML nesting depth", "WARMSTART_MAX_NESTING", 200)
INDEX_BYTES = Limit("checkpoint index or MetaGraph", "WARMSTART_MAX_INDEX_BYTES", 2 << 30)
METADATA_BYTES = Limit("metadata file (state file, shard index, signature, manifest)", "WARMSTART_MAX_METADATA_BYTES",
                       256 << 20)
MEMBER_BYTES = Limit("decompressed .keras member", "WARMSTART_MAX_MEMBER_BYTES", 64 << 30)
COMPRESSION_RATIO = Limit("compression ratio of a .keras member", "WARMSTART_MAX_COMPRESSION_RATIO", 100)
LIMITS = (RULES_BYTES, RULES_ENTRIES, VOCAB_BYTES, CONFIG_BYTES, NESTING, INDEX_BYTES, METADATA_BYTES, MEMBER_BYTES,
          COMPRESSION_RATIO)


def limit_value(limit: Limit) -> int:
    """The limit in force: its environment variable (an integer), else its default."""
    text = os.environ.get(limit.env, "").strip()
    if not text:
        return limit.default
    try:
        value = int(text)
    except ValueError:
        raise StorageError(f"{limit.env}={text!r}: expected a whole number") from None
    return value if value > 0 else limit.default


def require_regular_file(loc: Location) -> int:
    """The size of the regular file (object) at ``loc``; :class:`InputLimitError` for a FIFO, device,
    socket, directory or pseudo-filesystem file. Asked of ``stat``/``info``: nothing is opened."""
    if loc.is_local:
        path = os.path.realpath(loc.path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputNotFoundError(f"{loc.url} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot access {loc.url}: {exc}") from None
        if not stat.S_ISREG(st.st_mode) or path.startswith(_PSEUDO_ROOTS):
            raise InputLimitError(f"{loc.url} is not a regular file ({_kind(st.st_mode, path)}): refusing to read it")
        return st.st_size
    try:
        info = loc.fs.info(loc.path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot access {loc.url}: {exc}", is_transient(exc)) from None
    if info.get("type") != "file":
        raise InputLimitError(f"{loc.url} is not a file ({info.get('type')}): refusing to read it")
    return int(info.get("size") or 0)


def _kind(mode: int, path: str) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return f"a file of {path.split('/')[1]}/" if path.startswith(_PSEUDO_ROOTS) else "not a regular file"


def read_limited(loc: Location, limit: Limit, what: str | None = None) -> bytes:
    """The whole object at ``loc``, a regular file of at most ``limit`` bytes (locally read no further,
    whatever its size says; an object store's object is read whole once its stored size is checked, and
    refused if it then holds more). Raises :class:`InputLimitError`, :class:`InputNotFoundError` or :class:`StorageError`."""
    most = limit.value
    size = require_regular_file(loc)
    if size > most:
        raise _too_large(loc, limit, what, f"{size:,} bytes")
    try:
        if loc.is_local:
            data = _read_local(loc.path, most + 1)
        else:  # the store's size was checked above; one GET of the object, as any read of it
            data = loc.fs.cat_file(loc.path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot read {loc.url}: {exc}", is_transient(exc)) from None
    if len(data) > most:
        raise _too_large(loc, limit, what, "more bytes than that")
    return data


def _read_local(path: str, most: int) -> bytes:
    # O_NONBLOCK: a file swapped for a FIFO after the stat above must not block the open
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputLimitError(f"{path} is not a regular file: refusing to read it")
        chunks, total = [], 0
        while total < most:
            chunk = os.read(fd, min(16 << 20, most - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(loc: Location, limit: Limit, what: str | None, size: str) -> InputLimitError:
    return InputLimitError(f"{loc.url} ({what or limit.what}) holds {size}, over the limit of {limit.words()}: "
                           f"not what warmstart expects there; raise {limit.env} if it is right")


def check_nesting(doc: Any, origin: str, depth_limit: Limit = NESTING, max_nodes: int = 10_000_000) -> None:
    """Raise :class:`InputLimitError` when the parsed JSON/YAML ``doc`` nests deeper than the limit, or
    holds more than ``max_nodes`` values counted through YAML aliases (a "billion laughs" document).
    Walks iteratively: a deep document cannot exhaust Python's stack here."""
    most = depth_limit.value
    stack: list[tuple[Any, int]] = [(doc, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise InputLimitError(f"{origin}: more than {max_nodes:,} values (repeated aliases?): refusing it")
        children: Iterable[Any] = value.values() if isinstance(value, dict) else \
            value if isinstance(value, (list, tuple)) else ()
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                if depth + 1 > most:
                    raise InputLimitError(f"{origin}: nested deeper than {depth_limit.words('levels')}: refusing it")
                stack.append((child, depth + 1))
            else:
                nodes += 1
