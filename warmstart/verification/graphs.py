"""A TF1 graph a certificate runs: a MetaGraph (the ``.meta`` TF1's Saver writes beside a checkpoint) imported in
a graph of its own, its variables set from a checkpoint by warmstart's reader (each read under the key the
MetaGraph's own Saver stores it under), and tensors of it computed on probes.

A MetaGraph is data: only pure computations run. The ops a fetched tensor depends on (and every function of the
graph's library, which control flow calls) may have effects only on the graph's own state (variables, tensor
lists and arrays, random numbers, lookup tables); one that reads or writes files or acts elsewhere is refused
before anything runs. TensorFlow is imported inside the methods.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, TargetError, UsageError
from ..formats.saver_keys import saver_keys
from ..storage import INDEX_BYTES, read_bytes, resolve
from ..tables import parse_meta_graph
from .probes import InputSpec

__all__ = ["GraphSide"]

# Stateful ops whose state is the graph's own: what a model's forward pass may use.
_OWN_STATE = frozenset({
    "VarHandleOp", "ReadVariableOp", "VariableV2", "Variable", "VarIsInitializedOp", "ResourceGather",
    "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3", "TensorArrayGatherV3", "TensorArrayScatterV3",
    "TensorArraySizeV3", "TensorArraySplitV3", "TensorArrayConcatV3", "TensorArrayCloseV3",
    "StackV2", "StackPushV2", "StackPopV2", "StackCloseV2",
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
    "HashTableV2", "LookupTableFindV2", "LookupTableSizeV2", "MutableHashTableV2", "MutableHashTableOfTensorsV2",
    "While", "If", "Case", "StatefulPartitionedCall", "PartitionedCall", "Assert", "NoOp",
})


class GraphSide:
    """A TF1 graph imported from the MetaGraph at ``meta_url``, its variables read from ``reader`` (a checkpoint's
    reader: the source's, or the output's)."""

    def __init__(self, meta_url: str, reader: Any, storage_options: dict[str, Any] | None, what: str):
        import tensorflow as tf

        loc = resolve(meta_url, storage_options)
        meta = parse_meta_graph(read_bytes(loc, INDEX_BYTES), loc.url)
        self.url, self.what = loc.url, what
        self.graph = tf.Graph()
        try:
            with self.graph.as_default():
                tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as exc:
            raise TargetError(f"{what}: cannot import the TF1 graph {loc.url}: {exc}") from None
        found = saver_keys(meta, loc.url)
        self.keys = None if found is None else dict(found.keys)  # None: a default Saver's keys, the op names
        self.session = tf.compat.v1.Session(graph=self.graph)
        self._fill(reader)

    def close(self) -> None:
        self.session.close()

    def _fill(self, reader: Any) -> None:
        import tensorflow as tf

        from ..strategies.tf1_graphs import GraphAssigner, graph_variables

        assigner = GraphAssigner(self.graph, self.session)
        for name, gv in graph_variables(self.graph).items():
            # as the graph's own Saver keys it; one it does not save, by its op name (as warmstart writes it)
            key = name if self.keys is None else self.keys.get(name, name)
            if key not in reader.records:
                why = ": the MetaGraph's Saver does not save it" if self.keys is not None and name not in self.keys \
                    else f" (under the key {key!r} its Saver stores it)" if key != name else ""
                raise InputError(f"{self.what}: the graph's variable {name!r} is not in {reader.url}{why}")
            assigner.assign(gv.split(np.asarray(reader.read(key))))
        with self.graph.as_default():
            self.session.run([tf.compat.v1.tables_initializer(), tf.compat.v1.local_variables_initializer()])

    def tensor(self, name: str, where: str) -> Any:
        """The tensor ``name`` (``op:index``); raises :class:`UsageError` naming the closest names."""
        try:
            return self.graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            ops = [op.name for op in self.graph.get_operations()]
            close = difflib.get_close_matches(name.split(":")[0], ops, n=3)
            hint = f"; close: {', '.join(c + ':0' for c in close)}" if close else ""
            raise UsageError(f"{where}: no tensor {name!r} in {self.what}'s graph ({self.url}){hint}") from None

    def inputs(self, name: str, where: str) -> dict[str, InputSpec]:
        """The placeholders ``name`` depends on, by tensor name, as input specs."""
        out = {}
        for op in self._ops_of(self.tensor(name, where)):
            if op.type == "Placeholder":
                tensor = op.outputs[0]
                if tensor.shape.rank is None:
                    raise UsageError(f"{where}: placeholder {op.name!r} has no known rank: probes cannot be drawn")
                out[tensor.name] = InputSpec(tensor.name, tuple(tensor.shape.as_list()), tensor.dtype.name)
        return out

    def variables_of(self, name: str, where: str) -> tuple[str, ...]:
        """The variables (by name, as a TF1 Saver keys them) tensor ``name`` reads."""
        kinds = ("VarHandleOp", "VariableV2", "Variable")
        return tuple(sorted(op.name for op in self._ops_of(self.tensor(name, where)) if op.type in kinds))

    def run(self, name: str, feeds: Mapping[str, np.ndarray], where: str) -> list[np.ndarray]:
        """The value of tensor ``name`` given ``feeds`` (placeholder tensor name -> value); raises
        :class:`UsageError` when the computation has effects outside the graph."""
        import tensorflow as tf

        tensor = self.tensor(name, where)
        self._refuse_effects(tensor, where)
        feed = {self.graph.get_tensor_by_name(k): v for k, v in feeds.items()}
        try:
            return [np.asarray(self.session.run(tensor, feed))]
        except tf.errors.OpError as exc:
            raise UsageError(f"{where}: computing {name!r} in {self.what}'s graph failed: {exc.message.splitlines()[0]}"
                             ) from None

    def _ops_of(self, tensor: Any) -> list[Any]:
        seen: dict[str, Any] = {}
        stack = [tensor.op]
        while stack:
            op = stack.pop()
            if op.name not in seen:
                seen[op.name] = op
                stack += [t.op for t in op.inputs] + list(op.control_inputs)
        return list(seen.values())

    def _refuse_effects(self, tensor: Any, where: str) -> None:
        from tensorflow.python.framework import op_def_registry

        types = {op.type: op.op_def.is_stateful for op in self._ops_of(tensor)}
        if any(t in ("While", "If", "Case", "StatefulPartitionedCall", "PartitionedCall") for t in types):
            for function in self.graph.as_graph_def().library.function:
                for node in function.node_def:
                    op_def = op_def_registry.get(node.op)
                    types.setdefault(node.op, bool(op_def is None or op_def.is_stateful))
        acting = sorted(t for t, stateful in types.items() if stateful and t not in _OWN_STATE)
        if acting:
            raise UsageError(f"{where}: computing {tensor.name!r} runs {acting[0]} ops, which act outside the graph "
                             f"({self.url}): warmstart runs only pure computations of a MetaGraph")
