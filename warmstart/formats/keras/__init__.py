"""Keras weights files, read without Keras: ``.weights.h5``, the weights inside a ``.keras`` archive,
sharded ``.weights.json``, legacy ``.h5``."""

from __future__ import annotations

from ..._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".archive": ("check_members",),
    ".weights": ("KerasRecord", "KerasWeightsReader", "keras_versions"),
    "..sniff": ("KERAS_SUFFIXES", "is_keras_file"),
})
