"""The ``stream`` strategy into a Keras weights file, without TensorFlow or Keras.

The output starts as a byte copy of the target's ``.weights.h5`` template (or of a ``.keras`` archive's
weights) (every variable the plan
keeps has its initial value there already); each planned tensor is then read from the source (a TF
checkpoint or a Keras file, one tensor at a time), cast if the plan says so, and written over its
dataset with h5py. ``model.load_weights(output)`` takes the result as it takes the template.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import StorageError
from ..formats.bundle import checksums
from ..formats.keras import KerasWeightsReader
from ..planning import Plan
from .remap import remap_from
from .sources import SourceReaders
from .tf_common import cast_value

__all__ = ["stream_into_weights"]


def stream_into_weights(plan: Plan, source: Any, template: KerasWeightsReader, local_path: str,
                        progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Write ``template`` with the plan's tensors from ``source`` (a reader, or the readers of several
    sources by name) to the local file ``local_path``; returns the manifest's tensor rows and byte counts.
    Raises :class:`StorageError` when writing fails."""
    import h5py

    readers = SourceReaders.of(source, plan)

    try:
        template.copy_to(local_path)
    except OSError as exc:
        raise StorageError(f"copying the template {template.url} failed: {exc}") from None
    rows, done, total = [], 0, sum(readers.stored_bytes(e) for e in plan.transferred)
    with h5py.File(local_path, "r+") as f:
        for e in plan.transferred:
            dataset = f[e.target_key]
            value = np.ascontiguousarray(cast_value(readers.read(e), e) if e.remap is None else remap_from(
                readers.reader_for(e), e, lambda: _dataset_value(dataset, e.dtype)))
            dataset[...] = value.view(dataset.dtype) if dataset.dtype.kind == "V" else value  # bf16: raw 2-byte
            rows.append((e.target_key, e.dtype, value.shape, value.nbytes, checksums.mask(checksums.crc32c(value))))
            done += readers.stored_bytes(e)
            if progress is not None:
                progress(done, total, e.target)
    return {"tensors": rows, "absent": [], "bytes_read": done, "bytes_written": os.path.getsize(local_path)}


def _dataset_value(dataset: Any, dtype: str) -> np.ndarray:
    """The initial value a Keras weights dataset holds (bfloat16 and other raw 2-byte types viewed as ``dtype``)."""
    from ..formats import dtypes

    value = dataset[...]
    return value.view(dtypes.by_name(dtype).numpy) if dataset.dtype.kind == "V" else value
