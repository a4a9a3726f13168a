"""TensorFlow imported without its C++ start-up lines on stderr.

TF 2.21 prints, from C++ and whatever ``TF_CPP_MIN_LOG_LEVEL`` says, ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, ``oneDNN custom operations are on ...`` (twice) and the
CPU-instructions notice while it is imported. Every TensorFlow or Keras import of warmstart goes through
:func:`quiet_import`, so ``warmstart.transfer(...)`` in a script prints none of them; the CLI routes every import of
TensorFlow in its process through :class:`QuietTensorFlowImport`. While TensorFlow is imported, the process's
stderr (fd 2) is held in a file; afterwards what it received is written to stderr without those lines (another
thread's messages are delayed, never lost; an import that fails raises as usual). Nothing is held when TensorFlow
was imported already, or when ``TF_CPP_MIN_LOG_LEVEL=0`` asks for TensorFlow's logs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["quiet_import", "QuietTensorFlowImport", "start_up_lines_dropped"]

# Each line with its end; found anywhere, not only at a line's start: another thread's write may have come
# between a line and its newline (``print`` writes the text, then the end).
_START_UP_LINE = re.compile(
    rb"(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ (?:port|cpu_feature_guard)\.cc:\d+\] [^\n]*"
    rb"|To enable the following instructions: [^\n]*)\r?\n?")
_LOCK = threading.RLock()  # one import holds fd 2 at a time (nested holds, the CLI's and the library's, stack)


def _shown() -> bool:
    """TensorFlow's start-up lines are shown: TensorFlow is imported already (nothing to hold), or
    ``TF_CPP_MIN_LOG_LEVEL=0`` asks for its logs."""
    return "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


def quiet_import(name: str) -> ModuleType:
    """``import name`` (``tensorflow``, ``keras`` or one of their modules), TensorFlow first, without its start-up
    lines on stderr."""
    if not _shown():
        with _LOCK:
            if not _shown():  # not imported by another thread meanwhile
                with start_up_lines_dropped():
                    importlib.import_module("tensorflow")
    return importlib.import_module(name)


@contextlib.contextmanager
def start_up_lines_dropped() -> Iterator[None]:
    """Holds what the process writes to stderr (fd 2) meanwhile, then writes it without TensorFlow's start-up
    lines."""
    with _LOCK, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = _START_UP_LINE.sub(b"", held.read())
            if kept:
                os.write(2, kept)


class QuietTensorFlowImport:
    """A ``sys.meta_path`` finder (the CLI's: it owns its process) that imports TensorFlow, whoever imports it
    (a builder, a Prefect task), as :func:`quiet_import` does; later messages are not touched."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            loader, real = spec.loader, spec.loader.exec_module

            def exec_module(module: Any) -> None:
                with start_up_lines_dropped():
                    real(module)

            loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
