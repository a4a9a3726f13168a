"""Where the target's outputs wait while the source's model is built: small ones in memory, large ones in a
temporary directory (read back mapped), so that a certificate holds one model and one layer's outputs at a time,
not every layer's outputs of a large model. NumPy only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

__all__ = ["Spill", "SPILL_BYTES"]

SPILL_BYTES = 1 << 20  # outputs larger than this wait on disk


class Spill:
    """Keeps lists of arrays: :meth:`put` returns a handle, :meth:`get` the arrays; :meth:`close` removes the files."""

    def __init__(self, threshold: int = SPILL_BYTES):
        self.threshold = threshold
        self._dir: tempfile.TemporaryDirectory | None = None
        self._count = 0

    def put(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray | str, ...]:
        return tuple(self._one(np.asarray(a)) for a in arrays)

    def _one(self, array: np.ndarray) -> np.ndarray | str:
        if array.nbytes < self.threshold or array.dtype == object:
            return array
        if array.dtype.kind not in "biufc":  # bfloat16 and other ml_dtypes: float32 holds them exactly
            array = array.astype(np.float32)
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="warmstart-certificate-")
        self._count += 1
        path = os.path.join(self._dir.name, f"{self._count}.npy")
        np.save(path, array)
        return path

    def get(self, handle: Sequence[np.ndarray | str]) -> list[np.ndarray]:
        return [np.load(h, mmap_mode="r") if isinstance(h, str) else h for h in handle]

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
