"""Opening a source by its kind: a Keras weights file by its name, a TF checkpoint otherwise."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..storage import refuse_unfinished
from .bundle import BundleReader
from .interface import is_reader
from .sniff import is_keras_file

if TYPE_CHECKING:
    from .keras import KerasWeightsReader

__all__ = ["open_source"]


def open_source(url: str | os.PathLike | BundleReader | KerasWeightsReader,
                storage_options: dict[str, Any] | None = None) -> BundleReader | KerasWeightsReader:
    """A reader for the source at ``url``: a Keras 3 ``.weights.h5`` / ``.keras`` file, or a TF checkpoint
    (prefix, ``.index`` path or directory). Reads metadata only (the index, the HDF5 structure). A reader
    already open (a cached index or structure) is returned as it is. Raises :class:`InputError` for a file in
    an unfinished output (one holding ``.warmstart-incomplete``), :class:`UsageError` for a live object."""
    if is_reader(url):
        return url  # type: ignore[return-value]
    if not isinstance(url, (str, os.PathLike)):
        raise UsageError(f"a source is a checkpoint or Keras file (a path or URL), not a {type(url).__name__}: a live "
                         "model's or session's variables are copied by warmstart.copy_weights or copy_variables")
    url = os.fspath(url)
    if is_keras_file(url):
        from .keras import KerasWeightsReader  # its modules are imported for Keras files only

        reader: BundleReader | KerasWeightsReader = KerasWeightsReader(url, storage_options)
    else:
        reader = BundleReader(url, storage_options)
    refuse_unfinished(reader.prefix.parent, reader.url)  # a run's output being written (or killed) is no source
    return reader
