"""How the ``warmstart`` command ends its process: without Python's teardown when nothing needs it.

When a command returns, its work is done: every output published or withdrawn, every file it wrote closed.
What Python does after that, clearing every module and collecting what they held, takes 30-40 ms with
the modules a transfer imports (pydantic, protobuf's runtime), about a tenth of a local 1 GiB transfer.
:func:`end_process` skips only that: exit handlers run (temporary files removed, thread pools joined), stdout
and stderr are flushed, then the process exits with the command's code.

Only when the process holds nothing but the standard library and the libraries warmstart's own local work
uses: once code of the user's (a builder), TensorFlow, Prefect, Dask, h5py or a cloud filesystem is
imported, or a thread of its own is still running, the process ends the usual way, with the teardown
those may rely on.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

__all__ = ["end_process", "teardown_needed"]

# Top-level packages warmstart's local work imports, none of which holds anything a teardown must release.
_NO_TEARDOWN = frozenset({
    "warmstart", "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
    "google", "re2", "_re2", "crc32c", "numpy", "ml_dtypes", "yaml", "_yaml", "fsspec", "certifi",
    "_distutils_hack", "__main__", "rich", "markdown_it", "mdurl", "pygments", "cython_runtime",
})
_NO_TEARDOWN_PREFIXES = ("__editable__", "_sysconfigdata_", "_cython_")  # an editable install's finder, stdlib, Cython


def teardown_needed() -> str | None:
    """Why this process should end with Python's full teardown (a module or a thread), or None."""
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top not in _NO_TEARDOWN and top not in sys.stdlib_module_names and not top.startswith(_NO_TEARDOWN_PREFIXES):
            return f"module {name}"
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon:
            return f"thread {thread.name}"
    return None


def end_process(code: int) -> NoReturn:
    """Exit with ``code``: at once (exit handlers run, output flushed) when :func:`teardown_needed` finds
    nothing, else through ``sys.exit``."""
    if teardown_needed() is None:
        atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe: the usual exit reports it as usual
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
