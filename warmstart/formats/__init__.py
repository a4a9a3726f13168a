"""Formats: checkpoint files read and written without TensorFlow.

``bundle``: the TF tensor bundle (TF1 and TF2 checkpoints; ``bundle.directory``: a checkpoint directory's
state file and which checkpoint a URL names); ``keras``: Keras 3 weights files; ``output_layout``: the names
in a published output; ``meta_graph`` and ``saver_keys``: which key a TF1 MetaGraph's own Saver stores each
variable under. ``dtypes``: TF's DataType enum and its numpy counterparts, shared by every format. ``interface``: the reader protocol the wings above use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".": ("dtypes",),
    ".bundle": ("OBJECT_GRAPH_KEY", "BundleReader", "BundleWriter", "TensorRecord"),
    ".interface": ("TensorInfo", "TensorReader", "ReaderKind", "is_reader"),
    ".keras": ("KerasWeightsReader",),
    ".bundle.directory": ("STATE_FILE", "resolve_checkpoint", "state_file_text"),
    ".open": ("open_source",),
    ".output_layout": ("CHECKPOINT_NAME", "KERAS_WEIGHTS", "OUTPUT_LAYOUT"),
})
