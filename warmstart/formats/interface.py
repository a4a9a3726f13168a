"""What the wings above need of a checkpoint file, whatever its format.

Planning reads a :class:`TensorReader`'s ``records`` (key, dtype name, shape: metadata only); the
TF strategies call ``read``. The tensor bundle's :class:`~warmstart.formats.bundle.BundleReader`
is one; a Keras HDF5 reader is the next. Byte-range streaming is format-specific and stays with
the format's own reader and writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["StoredTensor", "TensorInfo", "TensorReader"]


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """One tensor in a file, as every format's reader records it: its key, dtype name and shape."""

    key: str
    dtype: str
    shape: tuple[int, ...]


class TensorInfo(Protocol):
    """One stored tensor: its storage key, dtype name (``float32``, ``bfloat16``, ``string``) and shape."""

    @property
    def key(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def shape(self) -> tuple[int, ...]: ...


class TensorReader(Protocol):
    """A checkpoint opened for reading: its resolved URL, its tensors by key, and their values."""

    url: str

    @property
    def records(self) -> Mapping[str, TensorInfo]: ...

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key``, checked (CRC or the format's equivalent); raises
        :class:`~warmstart.errors.InputNotFoundError` for an unknown key and
        :class:`~warmstart.errors.CorruptCheckpointError` for damaged bytes."""
        ...
