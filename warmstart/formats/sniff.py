"""What a file is, from its name (a Keras weights file or a checkpoint: which reader opens it) and from its first
bytes (for errors that say "this is a Keras archive" rather than "no checkpoint here")."""

from __future__ import annotations

import posixpath

from ..errors import StorageError
from ..storage import Location, read_range

__all__ = ["describe_file", "is_keras_file", "KERAS_SUFFIXES"]

# .weights.h5 (Keras 3), .h5 (legacy Keras 2 layout), .keras, .weights.json (sharded weights)
KERAS_SUFFIXES = (".h5", ".keras", ".weights.json")

_ZIP = b"PK\x03\x04"
_HDF5 = b"\x89HDF\r\n\x1a\n"


def is_keras_file(url: str) -> bool:
    """A Keras weights file (read by :class:`~warmstart.formats.keras.KerasWeightsReader`), by its name."""
    return url.split("?", 1)[0].rstrip("/").endswith(KERAS_SUFFIXES)


def describe_file(loc: Location) -> str | None:
    """``"a Keras 3 .keras archive"`` and the like for a file whose kind is recognised, else None
    (also when ``loc`` is not a file or cannot be read)."""
    name = posixpath.basename(loc.path)
    try:
        if not loc.fs.isfile(loc.path):
            return None
        head = read_range(loc, 0, 8)
    except (OSError, StorageError):
        return None
    if head.startswith(_ZIP):
        return "a Keras 3 .keras archive" if name.endswith(".keras") else "a zip archive"
    if head.startswith(_HDF5):
        if name.endswith(".weights.h5"):
            return "a Keras 3 weights file (.weights.h5)"
        return "an HDF5 file (a Keras .h5 model or weights file)"
    if name.endswith(".weights.json"):
        return "the index of a sharded Keras weights file (.weights.json)"
    if name.endswith(".meta"):
        return "a TF1 MetaGraph (.meta), which holds the graph but no variable values"
    if ".data-" in name:
        return "a data file of a TF checkpoint"
    return None
