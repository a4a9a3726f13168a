"""Formats: checkpoint files read and written without TensorFlow.

``bundle``: the TF tensor bundle (TF1 and TF2 checkpoints; ``bundle.directory``: a checkpoint directory's
state file and which checkpoint a URL names); ``keras``: Keras 3 weights files; ``output_layout``: the names
in a published output. ``dtypes``: TF's DataType enum and its numpy counterparts, shared by every format. ``interface``: the reader protocol the wings above use.
"""

from . import dtypes
from .bundle import OBJECT_GRAPH_KEY, BundleReader, BundleWriter, TensorRecord
from .interface import TensorInfo, TensorReader
from .keras import KerasWeightsReader
from .bundle.directory import STATE_FILE, resolve_checkpoint, state_file_text
from .open import open_source
from .output_layout import CHECKPOINT_NAME, KERAS_WEIGHTS, OUTPUT_LAYOUT

__all__ = ["dtypes", "BundleReader", "BundleWriter", "TensorRecord", "OBJECT_GRAPH_KEY", "TensorInfo",
           "TensorReader", "KerasWeightsReader", "open_source", "STATE_FILE", "resolve_checkpoint", "state_file_text",
           "CHECKPOINT_NAME", "KERAS_WEIGHTS", "OUTPUT_LAYOUT"]
