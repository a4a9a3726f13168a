"""Tables: what a source or a target *is*, as a :class:`VariableTable` (name -> shape, dtype, key).

One module per kind: checkpoints (``table``), signature files (``signature``), TF1 graphs and
MetaGraphs (``tf_graphs``), live trackables (``tf_objects``), Keras files (``keras_files``), user
builders and live objects (``builders``); ``targets`` tells kinds apart; ``structure`` names a TF2
checkpoint's variables by the model that wrote it; ``code_policy`` says which ``py:`` builders
may run. Keras variables get one set of names whatever holds them (``keras_names``; from a
configuration: ``keras_config``; from a live model: ``keras_walk``; weights files:
``keras_weights``). TensorFlow is imported
only inside the functions that need it.
"""

from .builders import run_builder, table_from_builder, table_from_object
from .code_policy import ALLOW_CODE_ENV, allowing_code, code_allowed, refuse_code, refuse_code_in_rules
from .keras_files import built_from_config, keras_file_model, load_keras_model, local_file, table_from_keras_file
from .signature import read_signature_file
from .keras_weights import table_from_keras_weights
from .table import (TableKind, Variable, VariableTable, has_list_index, read_table, table_from_bundle,
                    table_from_reader)
from .structure import named_by_structure
from .targets import TargetKind, signature_for, signature_of, target_kind
from .tf_graphs import parse_meta_graph, table_from_graph, table_from_meta_graph, table_from_meta_graph_bytes
from .tf_objects import stateful_layers, table_from_trackable, trackable_variables

__all__ = [
    "TableKind", "TargetKind", "Variable", "VariableTable", "has_list_index", "read_table", "table_from_bundle", "table_from_reader",
    "table_from_keras_weights", "signature_of", "signature_for", "target_kind",
    "read_signature_file", "table_from_graph", "table_from_meta_graph", "table_from_meta_graph_bytes",
    "table_from_trackable", "trackable_variables", "stateful_layers", "table_from_keras_file", "keras_file_model", "built_from_config", "table_from_builder",
    "table_from_object", "run_builder", "parse_meta_graph", "local_file", "load_keras_model", "named_by_structure",
    "ALLOW_CODE_ENV", "allowing_code", "code_allowed", "refuse_code", "refuse_code_in_rules",
]
