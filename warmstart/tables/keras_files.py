"""Variable tables of Keras model files (``*.keras``): built from their configuration with ``safe_mode``,
no weights loaded; ``load_keras_model`` loads one whole (for the strategies that assign into it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

from .._quiet import quiet_import
from .. import storage
from ..errors import InputLimitError, InputNotFoundError, StorageError, TargetError, WarmStartError
from ..formats.keras import check_members
from .table import VariableTable
from .tf_objects import table_from_trackable

__all__ = ["local_file", "load_keras_model", "table_from_keras_file", "built_without_weights", "built_from_config",
           "keras_file_model"]

_CONFIG = "config.json"


def table_from_keras_file(url: str, storage_options: dict[str, Any] | None = None) -> VariableTable:
    """The variables of the Keras model in the ``.keras`` file at ``url`` (local or remote).

    Only the archive's ``config.json`` is read (a few KiB of a remote file); the model is built from
    it with ``safe_mode=True`` in Keras' ``StatelessScope``, which defers every variable's initializer,
    so no weight is allocated or loaded (BERT-base: 0.08 s to build, against loading its 414 MiB). A
    model with a layer that cannot be built so is loaded whole.

    Raises :class:`InputNotFoundError` when the file does not exist, :class:`StorageError` when it
    cannot be read, and :class:`TargetError` when it is not a loadable ``.keras`` archive (not a zip,
    unsafe content such as a Python lambda, unknown classes, ...).
    """
    loc = storage.resolve(url, storage_options)
    if not loc.path.endswith(".keras"):
        raise TargetError(f"{loc.url} is not a Keras model file: expected a name ending in '.keras'")
    model = built_without_weights(_archive_config(loc), loc.url)
    if model is None:
        with local_file(loc) as path:
            model = load_keras_model(path, loc.url)
    return table_from_trackable(model, origin=loc.url, kind="keras")


def _archive_config(loc: storage.Location) -> dict[str, Any]:
    try:
        storage.require_regular_file(loc)
        with loc.fs.open(loc.path, "rb") as raw, zipfile.ZipFile(raw) as archive:
            check_members(archive, loc.url)
            info = archive.getinfo(_CONFIG)
            if info.file_size > storage.CONFIG_BYTES.value:
                raise InputLimitError(f"{loc.url}: its {_CONFIG} is {info.file_size:,} bytes, over the limit of "
                                      f"{storage.CONFIG_BYTES.words()}")
            config = json.loads(archive.read(info))
        storage.check_nesting(config, f"{loc.url}: {_CONFIG}")  # Keras rebuilds it recursively
        return config
    except WarmStartError:
        raise
    except RecursionError:  # json's parser recursed past Python's stack: far deeper than any model's
        raise InputLimitError(f"{loc.url}: its {_CONFIG} is nested deeper than {storage.NESTING.words('levels')}: "
                              "refusing it") from None
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except zipfile.BadZipFile:
        raise TargetError(f"{loc.url} is not a .keras file: it is not a zip archive") from None
    except (zlib.error, EOFError, NotImplementedError) as exc:
        raise TargetError(f"{loc.url}: its {_CONFIG} cannot be read from the archive: {exc}") from None
    except (KeyError, ValueError) as exc:
        raise TargetError(f"{loc.url} is not a .keras file with a model configuration: {exc}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {loc.url}: {exc}", storage.is_transient(exc)) from None


def built_without_weights(config: dict[str, Any], url: str) -> Any | None:
    """The model built from its configuration with no variable allocated (their initializers deferred
    and then dropped); None when a layer cannot be built that way."""
    keras = quiet_import("keras")

    deferred = _deferred_variables()
    before = len(deferred) if deferred is not None else 0
    try:
        with keras.StatelessScope(initialize_variables=False):  # (Keras changes the configuration it is given)
            return keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)
    except ValueError as exc:
        if "stateless scope" in str(exc):
            return None
        raise TargetError(f"cannot load the Keras model {url}: {exc}") from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise TargetError(f"cannot load the Keras model {url}: {exc}") from None
    finally:
        if deferred is not None:  # else a later StatelessScope would initialize (allocate) them all
            del deferred[before:]


def built_from_config(config: dict[str, Any], url: str) -> Any:
    """The model of ``config`` built by Keras with ``safe_mode`` (its variables initialized as its layers say; no
    weight loaded); raises :class:`TargetError` with Keras' reason."""
    import keras

    try:  # (Keras changes the configuration it is given: a reader's is used again)
        return keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TargetError(f"cannot build the Keras model of {url}: {exc}") from None


def keras_file_model(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The model of the ``.keras`` file at ``url`` built from its ``config.json`` (read within its limits), its
    weights not read: what ``load_model`` builds before it loads them."""
    loc = storage.resolve(url, storage_options)
    return built_from_config(_archive_config(loc), loc.url)


def _deferred_variables() -> list[Any] | None:
    """Keras' list of variables whose initializer is deferred (private, so looked up with care)."""
    try:
        global_state = quiet_import("keras.src.backend.common.global_state")

        found = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, list) else None


@contextlib.contextmanager
def local_file(loc: storage.Location) -> Iterator[str]:
    """A local path holding the file at ``loc``: the file itself, or a temporary copy of a remote one."""
    if "file" in _protocols(loc):
        if not loc.fs.exists(loc.path):
            raise InputNotFoundError(f"{loc.url} does not exist")
        yield loc.path
        return
    storage.require_regular_file(loc)
    with tempfile.TemporaryDirectory(prefix="warmstart-keras-") as tmp:
        path = os.path.join(tmp, "model.keras")
        try:
            loc.fs.get_file(loc.path, path)  # streamed to disk: never whole in memory
        except FileNotFoundError:
            raise InputNotFoundError(f"{loc.url} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {loc.url}: {exc}", storage.is_transient(exc)) from None
        yield path


def _protocols(loc: storage.Location) -> tuple[str, ...]:
    protocol = loc.fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def load_keras_model(path: str, url: str) -> Any:
    """Load a ``.keras`` archive safely; raises :class:`TargetError` with Keras's reason on failure."""
    keras = quiet_import("keras")

    # Keras reports a file that is not a zip as "File not found", which misleads: check first.
    if not zipfile.is_zipfile(path):
        raise TargetError(f"{url} is not a .keras file: it is not a zip archive")
    with zipfile.ZipFile(path) as archive:
        check_members(archive, url)  # Keras inflates every member: no zip bomb gets that far
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise TargetError(f"cannot load the Keras model {url}: {exc}") from None

