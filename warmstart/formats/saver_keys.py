"""Which key a TF1 MetaGraph's own Saver stores each variable under: what ``import_meta_graph(meta)`` and then
``.restore(...)`` reads.

``tf.compat.v1.train.Saver({"renamed/a": a})`` stores variable ``a`` under the key ``renamed/a``; the MetaGraph it
writes (``saver.save``, ``saver.export_meta_graph``) carries that Saver's ``saver_def``, which ``import_meta_graph``
turns back into the Saver a user restores with (without a ``saver_def`` it makes a default Saver: op names). The
keys are read from the graph as TF builds it (``saver.py``'s ``BaseSaverBuilder``): the save tensor the
``saver_def`` names depends on one ``SaveV2`` op per device (a sharded Saver merges them with
``MergeV2Checkpoints``; ``SaveSlices`` and ``Save`` in older formats), whose inputs are the keys (a ``Const``), the
slice specs (a ``Const``) and the saved tensors, each traced back through ``Identity``/``ReadVariableOp`` to its
variable; the parts of a partitioned variable are saved as slices of one key.

Works on TF's own parsed ``MetaGraphDef`` and on :mod:`.meta_graph`'s (the same field names). Linear in the
graph's size, without recursion; a chain of pass-through ops longer than :data:`MAX_CHAIN` is refused.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TargetError
from .meta_graph import parse_variable_def

__all__ = ["SaverKeys", "saver_keys", "MAX_CHAIN"]

#: The most pass-through ops (Identity, ReadVariableOp) followed from a saved tensor to its variable.
MAX_CHAIN = 64
_PASS_THROUGH = frozenset({"Identity", "ReadVariableOp", "Snapshot"})
_SAVE_OPS = {"SaveV2": 3, "SaveSlices": 3, "Save": 2}  # save op -> input index of its first saved tensor


@dataclass(frozen=True, slots=True)
class SaverKeys:
    """What a MetaGraph's Saver saves: ``keys``, variable name (op name; a partitioned variable's full name) ->
    its key; ``unsaved``, the variables of the ``variables`` collection it does not save; ``others``, (key, what
    it comes from) for saved tensors that are no variable of that collection (a lookup table's, a local
    variable's)."""

    keys: Mapping[str, str]
    unsaved: tuple[str, ...]
    others: tuple[tuple[str, str], ...]

    @property
    def renames(self) -> bool:
        """Some variable is stored under another key than its name."""
        return any(key != name for name, key in self.keys.items())


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str  # the logical variable: its op name, or a partitioned variable's full name
    spec: str  # the slice spec TF saves a partition part under ("10 4 0,4:0,4"), "" for a whole variable


@dataclass(frozen=True, slots=True)
class _Saved:
    key: str
    spec: str
    op: str  # the node the saved tensor traces back to
    op_type: str


def saver_keys(meta_graph: Any, origin: str) -> SaverKeys | None:
    """The keys the ``saver_def`` of ``meta_graph`` stores its variables under; None without a ``saver_def``.

    Raises :class:`TargetError` naming ``origin`` where the graph does not say one key per variable: the save op
    is missing, a saved tensor cannot be traced, a key is saved twice, a variable under two keys, or only some
    parts of a partitioned variable (or a part as a whole tensor).
    """
    if not meta_graph.HasField("saver_def"):
        return None
    variables = _collection_variables(meta_graph, origin)
    graph = _Graph(meta_graph.graph_def.node, origin)
    saved = list(graph.saved(meta_graph.saver_def.save_tensor_name))
    return _assemble(saved, variables, origin)


def _collection_variables(meta_graph: Any, origin: str) -> dict[str, _Variable]:
    """The variables of the ``variables`` collection (what a default Saver saves), by op name."""
    collection = meta_graph.collection_def.get("variables")
    found = {}
    for raw in (collection.bytes_list.value if collection is not None else ()):
        var_def = parse_variable_def(raw, origin)
        op = var_def.variable_name.split(":", 1)[0]
        if var_def.HasField("save_slice_info_def"):
            info = var_def.save_slice_info_def
            spec = (" ".join(str(d) for d in info.full_shape) + " "
                    + ":".join(f"{o},{s}" for o, s in zip(info.var_offset, info.var_shape)))
            found[op] = _Variable(info.full_name, spec)
        else:
            found[op] = _Variable(op, "")
    return found


class _Graph:
    """The nodes of a GraphDef by name, and the walks from the save tensor to what it saves."""

    def __init__(self, nodes: Any, origin: str):
        self.nodes = {node.name: node for node in nodes}
        self.origin = origin

    def saved(self, save_tensor: str) -> Iterator[_Saved]:
        """(key, slice spec, the node it comes from) for every tensor the save ops of ``save_tensor`` save."""
        ops = self._save_ops(save_tensor)
        if not ops:
            raise TargetError(f"{self.origin}: its saver_def saves through {save_tensor!r}, which depends on no "
                              f"save op ({', '.join(_SAVE_OPS)}): the MetaGraph's Saver cannot be read")
        for op in ops:
            first = _SAVE_OPS[op.op]
            tensors = [t for t in op.input[first:] if not t.startswith("^")]
            keys = self._strings(op, 1, "keys", len(tensors))
            specs = self._strings(op, 2, "slice specs", len(tensors)) if first == 3 else [""] * len(tensors)
            for key, spec, tensor in zip(keys, specs, tensors):
                end = self._traced(tensor, f"the tensor saved under {key!r}")
                yield _Saved(key, spec, end.name, end.op)

    def _save_ops(self, save_tensor: str) -> list[Any]:
        """The save ops the save tensor depends on (breadth-first over data and control inputs, each node once;
        a save op's own inputs are not walked)."""
        start = _node_name(save_tensor)
        if start not in self.nodes:
            raise TargetError(f"{self.origin}: its saver_def saves through {save_tensor!r}, which is not in the graph")
        seen, queue, found = {start}, deque([start]), []
        while queue:
            node = self.nodes[queue.popleft()]
            if node.op in _SAVE_OPS:
                found.append(node)
                continue
            for tensor in node.input:
                name = _node_name(tensor)
                if name not in seen and name in self.nodes:
                    seen.add(name)
                    queue.append(name)
        return sorted(found, key=lambda n: n.name)

    def _traced(self, tensor: str, what: str, through: frozenset[str] = _PASS_THROUGH) -> Any:
        """The node ``tensor`` comes from, followed back through ``through`` ops (at most :data:`MAX_CHAIN`)."""
        node = self.nodes.get(_node_name(tensor))
        for _ in range(MAX_CHAIN):
            if node is None:
                raise TargetError(f"{self.origin}: {what}: {tensor!r} is not in the graph")
            data = [t for t in node.input if not t.startswith("^")]
            if node.op not in through or not data:
                return node
            tensor, node = data[0], self.nodes.get(_node_name(data[0]))
        raise TargetError(f"{self.origin}: {what}: reached through more than {MAX_CHAIN} {'/'.join(sorted(through))} "
                          "ops, which warmstart does not follow")

    def _strings(self, op: Any, index: int, what: str, count: int) -> list[str]:
        """The ``count`` strings of the constant input ``index`` of save op ``op`` (TF repeats a constant's last
        value over the elements it does not list)."""
        where = f"the {what} of save op {op.name!r}"
        node = self._traced(op.input[index], where, frozenset({"Identity"})) if len(op.input) > index else None
        if node is None or node.op != "Const" or "value" not in node.attr:
            raise TargetError(f"{self.origin}: {where} are not a constant: the MetaGraph's Saver cannot be read")
        tensor = node.attr["value"].tensor
        dims = [d.size for d in tensor.tensor_shape.dim]
        values = list(tensor.string_val)
        if tensor.tensor_shape.unknown_rank or any(d < 0 for d in dims) or math.prod(dims) != count or not (
                0 < len(values) <= count):
            raise TargetError(f"{self.origin}: {where} are {len(values)} strings of shape {dims} for {count} saved "
                              "tensors: the MetaGraph's Saver cannot be read")
        values += [values[-1]] * (count - len(values))
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise TargetError(f"{self.origin}: {where} are not UTF-8 text") from None


def _node_name(tensor: str) -> str:
    """The node of a tensor name (``name:1``) or control input (``^name``)."""
    return tensor.removeprefix("^").partition(":")[0]


def _assemble(saved: list[_Saved], variables: dict[str, _Variable], origin: str) -> SaverKeys:
    """One key per logical variable, checked: each key saved once (the slices of one partitioned variable
    excepted), each variable under one key, a partitioned variable whole (every part, as its own slice)."""
    by_key: dict[str, list[_Saved]] = {}
    keys: dict[str, str] = {}
    parts: dict[str, set[str]] = {}
    others = []
    for s in saved:
        by_key.setdefault(s.key, []).append(s)
        v = variables.get(s.op)
        if v is None:
            others.append((s.key, f"a {s.op_type} op, {s.op!r}"))
            continue
        if s.spec != v.spec:
            saved_as = f"as the slice {s.spec!r}" if s.spec else "whole"
            raise TargetError(f"{origin}: its Saver saves {s.op!r} {saved_as} under the key {s.key!r}, but the "
                              f"variable is {f'the slice {v.spec!r} of {v.name!r}' if v.spec else 'not partitioned'}")
        if keys.setdefault(v.name, s.key) != s.key:
            raise TargetError(f"{origin}: its Saver saves variable {v.name!r} under two keys, {keys[v.name]!r} and "
                              f"{s.key!r}: which one a restore reads is not one answer")
        parts.setdefault(v.name, set()).add(s.op)
    for key, group in by_key.items():
        ops = [s.op for s in group]
        logical = {variables[op].name if op in variables else None for op in ops}
        if len(group) > 1 and (None in logical or len(logical) > 1 or len(set(ops)) < len(ops)):
            raise TargetError(f"{origin}: its Saver saves {len(group)} tensors under the key {key!r} "
                              f"({', '.join(repr(op) for op in ops)}): a checkpoint holds one value per key")
    counts = Counter(v.name for v in variables.values())
    for name, saved_parts in parts.items():
        if len(saved_parts) != counts[name]:
            missing = sorted(op for op, v in variables.items() if v.name == name and op not in saved_parts)
            raise TargetError(f"{origin}: its Saver saves {len(saved_parts)} of the {counts[name]} parts of "
                              f"partitioned variable {name!r} (not {missing[0]!r}): a restore would fill only some")
    unsaved = tuple(dict.fromkeys(v.name for v in variables.values() if v.name not in keys))
    return SaverKeys(keys, unsaved, tuple(others))
