"""Variable tables of Keras model files (``*.keras``), loaded with ``safe_mode`` from a local copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

from .. import storage
from ..errors import InputNotFoundError, TargetError
from .table import VariableTable
from .tf_objects import table_from_trackable

__all__ = ["local_file", "load_keras_model", "table_from_keras_file"]


def table_from_keras_file(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variables of the Keras model in the ``.keras`` file at ``url`` (local or remote), loaded
    with ``safe_mode=True`` and without compiling it.

    Raises :class:`InputNotFoundError` when the file does not exist, :class:`StorageError` when it
    cannot be read, and :class:`TargetError` when it is not a loadable ``.keras`` archive (not a zip,
    unsafe content such as a Python lambda, unknown classes, ...).
    """
    loc = storage.resolve(url, storage_options)
    if not loc.path.endswith(".keras"):
        raise TargetError(f"{loc.url} is not a Keras model file: expected a name ending in '.keras'")
    with local_file(loc) as path:
        model = load_keras_model(path, loc.url)
    return table_from_trackable(model, origin=loc.url, kind="keras")


@contextlib.contextmanager
def local_file(loc: storage.Location) -> Iterator[str]:
    """A local path holding the file at ``loc``: the file itself, or a temporary copy of a remote one."""
    if "file" in _protocols(loc):
        if not loc.fs.exists(loc.path):
            raise InputNotFoundError(f"{loc.url} does not exist")
        yield loc.path
        return
    data = storage.read_bytes(loc)
    with tempfile.TemporaryDirectory(prefix="warmstart-keras-") as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        yield path


def _protocols(loc: storage.Location) -> tuple[str, ...]:
    protocol = loc.fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def load_keras_model(path: str, url: str) -> Any:
    """Load a ``.keras`` archive safely; raises :class:`TargetError` with Keras's reason on failure."""
    import keras

    # Keras reports a file that is not a zip as "File not found", which misleads: check first.
    if not zipfile.is_zipfile(path):
        raise TargetError(f"{url} is not a .keras file: it is not a zip archive")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise TargetError(f"cannot load the Keras model {url}: {exc}") from None

