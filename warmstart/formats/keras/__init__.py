"""Keras 3 weights files, read without Keras: ``.weights.h5`` and the weights inside a ``.keras`` archive."""

from .weights import KERAS_SUFFIXES, KerasRecord, KerasWeightsReader, is_keras_file

__all__ = ["KerasWeightsReader", "KerasRecord", "KERAS_SUFFIXES", "is_keras_file"]
