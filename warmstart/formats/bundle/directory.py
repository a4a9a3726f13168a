"""A TF checkpoint directory: its ``checkpoint`` state file, and which checkpoint a URL names.

A directory resolves to its latest checkpoint through the state file (which may never point outside the
directory); a directory without one (what ``tf.train.Checkpoint.write`` leaves) to its only checkpoint.
:func:`state_file_text` is what a published output's state file says.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from typing import Any

from ...errors import CorruptCheckpointError, InputNotFoundError, StorageError
from ...storage import Location, is_transient, object_size, read_bytes, resolve

__all__ = ["STATE_FILE", "resolve_checkpoint", "state_file_text"]

#: The state file TF writes beside its checkpoints: ``tf.train.latest_checkpoint(dir)`` reads it.
STATE_FILE = "checkpoint"
MAX_STATE_FILE_BYTES = 1 << 20

log = logging.getLogger(__name__)


def state_file_text(prefix_name: str) -> str:
    """The state file naming checkpoint ``prefix_name`` (relative to its directory), as TF writes it."""
    return f'model_checkpoint_path: "{prefix_name}"\nall_model_checkpoint_paths: "{prefix_name}"\n'


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
