"""The output a certificate loads, as local files: a Keras weights file (``model.weights.h5``) and/or a TF
checkpoint prefix (``model.ckpt``), from an output directory (a staged one, or one any tool finished), a weights
file or a checkpoint prefix given directly. Remote outputs are copied into a temporary directory first (Keras and
TensorFlow load local files).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputNotFoundError, StorageError
from ..formats import CHECKPOINT_NAME, KERAS_WEIGHTS, resolve_checkpoint
from ..storage import Location, is_transient, refuse_unfinished, resolve

__all__ = ["OutputFiles", "output_files"]

_WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".keras")


@dataclass(frozen=True)
class OutputFiles:
    """Where the output's files are on this machine: ``weights`` (a Keras weights file), ``checkpoint`` (a TF
    checkpoint prefix); ``url``: the output as named."""

    url: str
    weights: str | None = None
    checkpoint: str | None = None

    def describe(self) -> str:
        if self.weights:
            return f"model.load_weights({os.path.basename(self.weights)})"
        return f"tf.train.Checkpoint(model=...).restore({os.path.basename(self.checkpoint or '')})"


@contextlib.contextmanager
def output_files(output: str | Location, storage_options: dict[str, Any] | None = None,
                 finished: bool = True) -> Iterator[OutputFiles]:
    """The local files of ``output`` (a directory, a Keras weights file or a checkpoint prefix). ``finished``:
    refuse a directory a run is writing or was killed writing (its marker); the staged output of this run is not
    finished yet. Raises :class:`InputNotFoundError` when it holds neither a weights file nor a checkpoint."""
    loc = output if isinstance(output, Location) else resolve(output, storage_options)
    weights, prefix = _find(loc, finished, storage_options)
    if weights is None and prefix is None:
        raise InputNotFoundError(f"{loc.url} holds no model weights: neither a Keras weights file ({KERAS_WEIGHTS}) "
                                 "nor a TF checkpoint (a 'checkpoint' state file, or model.ckpt.index)")
    if loc.is_local:
        yield OutputFiles(loc.url, weights and weights.path, prefix and prefix.path)
        return
    with tempfile.TemporaryDirectory(prefix="warmstart-verify-") as tmp:
        yield OutputFiles(loc.url, _fetch(weights, tmp) if weights else None,
                          _fetch_checkpoint(prefix, tmp) if prefix else None)


def _find(loc: Location, finished: bool, storage_options) -> tuple[Location | None, Location | None]:
    path = loc.path.rstrip("/")
    if path.endswith(_WEIGHTS_SUFFIXES):
        if finished:
            refuse_unfinished(loc.parent, loc.url)
        return loc, None
    if _exists(loc.fs, path + ".index"):  # a checkpoint prefix
        if finished:
            refuse_unfinished(loc.parent, loc.url)
        return None, loc
    if finished:
        refuse_unfinished(loc, loc.url)
    weights = loc.child(KERAS_WEIGHTS)
    weights = weights if _exists(loc.fs, weights.path) else None
    if _exists(loc.fs, loc.child(CHECKPOINT_NAME).path + ".index"):
        return weights, loc.child(CHECKPOINT_NAME)
    try:
        return weights, resolve_checkpoint(loc.url, storage_options)
    except InputNotFoundError:
        return weights, None


def _exists(fs: Any, path: str) -> bool:
    try:
        return bool(fs.exists(path))
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}", is_transient(exc)) from None


def _fetch(loc: Location, directory: str) -> str:
    local = os.path.join(directory, posixpath.basename(loc.path))
    try:
        loc.fs.get_file(loc.path, local)
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot read {loc.url}: {exc}", is_transient(exc)) from None
    return local


def _fetch_checkpoint(prefix: Location, directory: str) -> str:
    base = posixpath.basename(prefix.path)
    try:
        data = list(prefix.fs.glob(prefix.path + ".data-*"))
    except OSError as exc:
        raise StorageError(f"cannot list {prefix.url}: {exc}", is_transient(exc)) from None
    for path in [prefix.path + ".index", *data]:
        _fetch(Location(prefix.fs, path), directory)
    return os.path.join(directory, base)
