"""Formats: checkpoint files read and written without TensorFlow.

``bundle``: the TF tensor bundle (TF1 and TF2 checkpoints); ``keras``: Keras 3 weights files. ``dtypes``: TF's DataType enum and its
numpy counterparts, shared by every format. ``interface``: the reader protocol the wings above use.
"""

from . import dtypes
from .bundle import OBJECT_GRAPH_KEY, BundleReader, BundleWriter, TensorRecord
from .interface import TensorInfo, TensorReader
from .keras import KerasWeightsReader
from .open import open_source

__all__ = ["dtypes", "BundleReader", "BundleWriter", "TensorRecord", "OBJECT_GRAPH_KEY", "TensorInfo",
           "TensorReader", "KerasWeightsReader", "open_source"]
