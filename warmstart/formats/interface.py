"""What the wings above need of a checkpoint file, whatever its format.

Planning reads a :class:`TensorReader`'s ``records`` (key, dtype name, shape: metadata only); the
TF strategies call ``read``. The tensor bundle's :class:`~warmstart.formats.bundle.BundleReader`
is one, :class:`~warmstart.formats.keras.KerasWeightsReader` the other; each says which it is (``reader_kind``), so
that telling them apart imports neither. Byte-range streaming is format-specific and stays with
the format's own reader and writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

if TYPE_CHECKING:
    import numpy as np

__all__ = ["StoredTensor", "TensorInfo", "TensorReader", "ReaderKind", "is_reader"]

#: What a reader reads: a TF checkpoint (a tensor bundle) or a Keras weights file.
ReaderKind = Literal["tf-checkpoint", "keras-weights"]


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
    """A checkpoint opened for reading: its kind, its resolved URL, its tensors by key, and their values."""

    reader_kind: ReaderKind
    url: str

    @property
    def records(self) -> Mapping[str, TensorInfo]: ...

    def read(self, key: str) -> np.ndarray:
        """The whole tensor ``key``, checked (CRC or the format's equivalent); raises
        :class:`~warmstart.errors.InputNotFoundError` for an unknown key and
        :class:`~warmstart.errors.CorruptCheckpointError` for damaged bytes."""
        ...


def is_reader(value: Any) -> bool:
    """``value`` is a reader already open (a :class:`TensorReader` of either kind), not a URL to open."""
    return getattr(value, "reader_kind", None) in get_args(ReaderKind)
