"""Tables: what a source or a target *is*, as a :class:`VariableTable` (name -> shape, dtype, key).

One module per kind: checkpoints (``table``), signature files (``signature``), TF1 graphs and
MetaGraphs (``tf_graphs``; a TF1 source or template named by the MetaGraph beside it: ``tf1_template``), live trackables (``tf_objects``), Keras files (``keras_files``), user
builders and live objects (``builders``); ``targets`` tells kinds apart; ``structure`` names a TF2
checkpoint's variables by the model that wrote it; ``code_policy`` says which ``py:`` builders
may run. Keras variables get one set of names whatever holds them (``keras_names``; from a
configuration: ``keras_config``; from a live model: ``keras_walk``; weights files:
``keras_weights``). TensorFlow is imported
only inside the functions that need it.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".builders": ("run_builder", "table_from_builder", "table_from_object"),
    ".code_policy": ("ALLOW_CODE_ENV", "allowing_code", "code_allowed", "refuse_code", "refuse_code_in_rules"),
    ".keras_files": ("built_from_config", "keras_file_model", "load_keras_model", "local_file", "table_from_keras_file"),
    ".keras_config": ("looks_generated",),
    ".signature": ("read_signature_file",),
    ".keras_weights": ("table_from_keras_weights",),
    ".table": (
        "TableKind", "Variable", "VariableTable", "has_list_index", "read_table", "table_from_bundle",
        "table_from_reader",
    ),
    ".structure": ("named_by_structure",),
    ".targets": ("TargetKind", "signature_for", "signature_of", "target_kind"),
    ".tf1_template": ("Role", "checkpoint_table", "named_by_its_graph"),
    ".tf_graphs": ("parse_meta_graph", "table_from_graph", "table_from_meta_graph", "table_from_meta_graph_bytes"),
    ".tf_objects": ("stateful_layers", "table_from_trackable", "trackable_variables"),
})
