"""Opening a source by its kind: a Keras weights file by its name, a TF checkpoint otherwise."""

from __future__ import annotations

import os
from typing import Any

from ..storage import refuse_unfinished
from .bundle import BundleReader
from .keras import KerasWeightsReader, is_keras_file

__all__ = ["open_source"]


def open_source(url: str | os.PathLike | BundleReader | KerasWeightsReader,
                storage_options: dict[str, Any] | None = None) -> BundleReader | KerasWeightsReader:
    """A reader for the source at ``url``: a Keras 3 ``.weights.h5`` / ``.keras`` file, or a TF checkpoint
    (prefix, ``.index`` path or directory). Reads metadata only (the index, the HDF5 structure). A reader
    already open (a cached index or structure) is returned as it is. Raises :class:`InputError` for a file in
    an unfinished output (one holding ``.warmstart-incomplete``)."""
    if isinstance(url, (BundleReader, KerasWeightsReader)):
        return url
    url = os.fspath(url)
    reader = KerasWeightsReader(url, storage_options) if is_keras_file(url) else BundleReader(url, storage_options)
    refuse_unfinished(reader.prefix.parent, reader.url)  # a run's output being written (or killed) is no source
    return reader
