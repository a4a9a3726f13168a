"""Keras weights files, read without Keras: ``.weights.h5``, the weights inside a ``.keras`` archive,
sharded ``.weights.json``, legacy ``.h5``."""

from .archive import check_members
from .weights import KERAS_SUFFIXES, KerasRecord, KerasWeightsReader, is_keras_file, keras_versions

__all__ = ["check_members", "KerasWeightsReader", "KerasRecord", "KERAS_SUFFIXES", "is_keras_file", "keras_versions"]
