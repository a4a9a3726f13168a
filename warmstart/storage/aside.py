"""A local file written aside and moved into place only when complete.

A reader (``model.load_weights``) must never find a half-written file under its final name: the
file is written as ``.warmstart-partial-<name>`` in the same directory (the same filesystem, so the
move is one ``rename``) and renamed once its writer has returned; a failure removes the partial file,
and a run killed meanwhile leaves only the partial file, which the next run clears as its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["ASIDE_PREFIX", "written_aside"]

# Keeps the name's ending (Keras' save_weights insists on '.weights.h5')
ASIDE_PREFIX = ".warmstart-partial-"


@contextlib.contextmanager
def written_aside(directory: str, name: str) -> Iterator[str]:
    """Yields the path to write; on success the file is flushed to disk and renamed to ``directory/name``."""
    final = os.path.join(directory, name)
    partial = os.path.join(directory, ASIDE_PREFIX + name)
    try:
        yield partial
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)  # its bytes on disk before its name says it is complete
        finally:
            os.close(fd)
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
