"""Publishing an output directory so that no reader ever sees half of it.

Order: checkpoint data and index objects first, then the ``checkpoint`` state file, then the
``warmstart.json`` manifest. Until the state file exists, ``tf.train.latest_checkpoint(dir)``
finds nothing; a failed run removes what it wrote. The output may not be, or lie inside, an
input's directory, and must be empty unless ``overwrite`` is given.
"""

from __future__ import annotations

import datetime as _dt
import json
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CorruptCheckpointError, StorageError
from .storage import STATE_FILE, Location, is_transient, read_bytes, resolve, resolve_checkpoint

__all__ = ["OutputDir", "MANIFEST", "CHECKPOINT_NAME", "check_not_inside", "publish_directory", "read_manifest"]

MANIFEST = "warmstart.json"
CHECKPOINT_NAME = "model.ckpt"


def _same_fs(a: Location, b: Location) -> bool:
    pa, pb = a.fs.protocol, b.fs.protocol
    return (pa if isinstance(pa, str) else pa[0]) == (pb if isinstance(pb, str) else pb[0])


def check_not_inside(output: Location, inputs: Iterable[Location]) -> None:
    """Raise :class:`StorageError` if ``output`` equals or lies inside the directory of an input
    checkpoint (given by its prefix)."""
    for loc in inputs:
        if not _same_fs(output, loc):
            continue
        # Inputs are checkpoint prefixes: their directory holds the state file a run would clobber.
        directory = posixpath.dirname(loc.path)
        out = output.path.rstrip("/")
        if out == directory.rstrip("/") or out.startswith(directory.rstrip("/") + "/"):
            raise StorageError(
                f"output {output.url} is or lies inside the directory of input {loc.url}: "
                "choose an output outside it (inputs are never modified)"
            )


class OutputDir:
    """An output directory being written. Use :meth:`prefix` for the checkpoint, then :meth:`commit`."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, overwrite: bool = False):
        self.loc = resolve(url, storage_options)
        self.url = self.loc.url
        self._written: list[Location] = []
        try:
            existing = self.loc.fs.ls(self.loc.path, detail=False) if self.loc.fs.isdir(self.loc.path) else []
            if not existing and self.loc.fs.isfile(self.loc.path):
                raise StorageError(f"output {self.url} is a file, not a directory")
            if existing and not overwrite:
                raise StorageError(
                    f"output {self.url} is not empty ({len(existing)} entries): choose a new directory, "
                    "or pass overwrite=True (--overwrite)"
                )
            if existing and overwrite:
                self._remove_published()
            self.loc.fs.makedirs(self.loc.path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot prepare output {self.url}: {exc}", is_transient(exc)) from None

    @property
    def prefix(self) -> Location:
        return self.loc.child(CHECKPOINT_NAME)

    def _remove_published(self) -> None:
        # The state file and manifest go first so that no reader sees the old checkpoint half-replaced.
        for name in (MANIFEST, STATE_FILE):
            loc = self.loc.child(name)
            if self.loc.fs.exists(loc.path):
                self.loc.fs.rm(loc.path)
        for path in self.loc.fs.ls(self.loc.path, detail=False):
            if posixpath.basename(path).startswith(CHECKPOINT_NAME + "."):
                self.loc.fs.rm(path)

    def put_file(self, local_path: str, name: str) -> Location:
        """Upload a local file into the output directory (multipart/resumable as fsspec does)."""
        dest = self.loc.child(name)
        try:
            self.loc.fs.put_file(local_path, dest.path)
        except OSError as exc:
            raise StorageError(f"uploading {name} to {dest.url} failed: {exc}", is_transient(exc)) from None
        self._written.append(dest)
        return dest

    def record(self, loc: Location) -> None:
        """Note an object written directly (by a streaming writer) so that :meth:`abort` removes it."""
        self._written.append(loc)

    def _write_text(self, name: str, text: str) -> Location:
        dest = self.loc.child(name)
        try:
            with self.loc.fs.open(dest.path, "w") as f:
                f.write(text)
        except OSError as exc:
            raise StorageError(f"writing {dest.url} failed: {exc}", is_transient(exc)) from None
        self._written.append(dest)
        return dest

    def commit(self, manifest: dict[str, Any]) -> str:
        """Write the state file, then the manifest; returns the manifest URL."""
        state = f'model_checkpoint_path: "{CHECKPOINT_NAME}"\nall_model_checkpoint_paths: "{CHECKPOINT_NAME}"\n'
        self._write_text(STATE_FILE, state)
        # Compact: with indent, json uses its pure-Python encoder (seconds for a 20k-variable plan).
        return self._write_text(MANIFEST, json.dumps(manifest, separators=(",", ":")) + "\n").url

    def abort(self) -> None:
        """Remove everything this run wrote (best effort; the original error is what matters)."""
        for loc in reversed(self._written):
            try:
                if loc.fs.exists(loc.path):
                    loc.fs.rm(loc.path)
            except OSError:
                pass
        self._written.clear()


def manifest_document(*, source: dict[str, Any], target: dict[str, Any], rules: dict[str, Any],
                      strategy: str, plan: dict[str, Any], tensors: list[dict[str, Any]],
                      absent: list[str], stats: dict[str, Any]) -> dict[str, Any]:
    """The ``warmstart.json`` document (see DESIGN.md: source, target, rules, plan, checksums, version, time)."""
    return {
        "format": "warmstart.manifest",
        "version": 1,
        "tool": {"name": "warmstart", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "target": target,
        "rules": rules,
        "strategy": strategy,
        "checkpoint": {"prefix": CHECKPOINT_NAME, "tensors": tensors},
        "absent": absent,
        "stats": stats,
        "plan": plan,
    }


def publish_directory(staging: str, output: str, storage_options: dict[str, Any] | None = None,
                      overwrite: bool = False, inputs: Iterable[str] = ()) -> dict[str, Any]:
    """Upload a finished local output (as :func:`warmstart.transfer` writes it) to ``output``.

    Checkpoint data and index first, then the state file, then the manifest: no reader sees a
    partial output, and a failure removes what was uploaded. ``inputs`` are checkpoint URLs the
    output may not be, or lie inside the directory of. Returns ``{"output", "manifest", "files"}``.
    """
    staged = Path(staging)
    if not (staged / MANIFEST).is_file() or not (staged / STATE_FILE).is_file():
        raise StorageError(f"{staging} is not a finished warmstart output (no {MANIFEST} or {STATE_FILE})")
    out_loc = resolve(output, storage_options)
    check_not_inside(out_loc, [resolve_checkpoint(url, storage_options) for url in inputs])
    out = OutputDir(output, storage_options, overwrite=overwrite)
    last = (STATE_FILE, MANIFEST)
    # Data shards before the index: an index never names bytes that are not there yet.
    first = sorted((p.name for p in staged.iterdir() if p.is_file() and p.name not in last),
                   key=lambda n: (n.endswith(".index"), n))
    try:
        for name in (*first, *last):
            out.put_file(str(staged / name), name)
    except BaseException:
        out.abort()
        raise
    return {"output": out.url, "manifest": out.loc.child(MANIFEST).url, "files": [*first, *last]}


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``warmstart.json`` at ``url`` (the manifest itself or its output directory)."""
    loc = resolve(url, storage_options)
    if not loc.path.endswith(MANIFEST):
        loc = loc.child(MANIFEST)
    try:
        return json.loads(read_bytes(loc))
    except json.JSONDecodeError as exc:
        raise CorruptCheckpointError(f"{loc.url}: not a JSON manifest: {exc}") from None
