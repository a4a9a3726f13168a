"""Strategies: execute an ok plan and write bytes; they never decide what matches.

``stream`` copies checkpoint bytes to checkpoint bytes without TensorFlow (ranged reads, CRCs
checked, memory bounded by a chunk); ``keras_stream`` writes into a Keras weights file. ``restore_assign`` builds the target with TensorFlow and fills
it: TF1 graphs in ``tf1`` (over the graph primitives of ``tf1_graphs``), Keras models and
``tf.Module`` objects in ``tf2``, both over ``tf_common``. ``live`` copies between live sessions or models.
"""

from .keras_stream import stream_into_weights
from .live import copy_variables, copy_weights
from .restore_assign import restore_or_assign
from .scaleout import run_units
from .sources import SourceReaders
from .stream import (
    DEFAULT_CHUNK_BYTES,
    StreamStats,
    copy_tensors,
    stream_part,
    stream_transfer,
    template_keys,
    write_subset,
)
from .tf_common import BATCH_BYTES, TFResult, UninitializedVariableError, local_checkpoint_copy
from .units import Unit, UnitResult, run_prefix, run_unit, run_unit_retrying, split_units

__all__ = [
    "stream_transfer", "stream_part", "template_keys", "write_subset", "copy_tensors", "StreamStats", "DEFAULT_CHUNK_BYTES",
    "restore_or_assign", "TFResult", "UninitializedVariableError", "local_checkpoint_copy", "BATCH_BYTES",
    "copy_variables", "copy_weights", "stream_into_weights", "SourceReaders",
    "Unit", "UnitResult", "split_units", "run_prefix", "run_unit", "run_unit_retrying", "run_units",
]
