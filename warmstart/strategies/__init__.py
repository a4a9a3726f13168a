"""Strategies: execute an ok plan and write bytes; they never decide what matches.

``stream`` copies checkpoint bytes to checkpoint bytes without TensorFlow (ranged reads, CRCs
checked, memory bounded by a chunk); ``keras_stream`` writes into a Keras weights file. ``restore_assign`` builds the target with TensorFlow and fills
it: TF1 graphs in ``tf1`` (over the graph primitives of ``tf1_graphs``), Keras models and
``tf.Module`` objects in ``tf2``, both over ``tf_common``. ``live`` copies between live sessions or models.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".keras_stream": ("stream_into_weights",),
    ".live": ("copy_variables", "copy_weights"),
    ".restore_assign": ("restore_or_assign",),
    ".scaleout": ("dask_client", "run_units", "unit_error"),
    ".sources": ("SourceReaders",),
    ".stream": (
        "DEFAULT_CHUNK_BYTES", "StreamStats", "copy_tensors", "stream_part", "stream_transfer", "template_keys",
        "write_subset",
    ),
    ".tf_common": ("BATCH_BYTES", "TFResult", "UninitializedVariableError", "local_checkpoint_copy"),
    ".units": ("Unit", "UnitResult", "run_prefix", "run_unit", "run_unit_retrying", "split_units"),
})
