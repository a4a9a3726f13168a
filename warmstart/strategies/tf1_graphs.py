"""TF1 graph primitives shared by the TF1 strategy and live copies: logical (partitioned) variables,
assign ops reused across calls, session checks, Savers in a scope of their own, and reading values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._quiet import quiet_import
from ..errors import UsageError
from .tf_common import UninitializedVariableError

__all__ = ["GraphVar", "graph_variables", "GraphAssigner", "check_open", "check_not_finalized", "uninitialized", "scoped_saver", "read_graph_values"]


@dataclass(frozen=True)
class GraphVar:
    """One logical TF1 variable: a plain variable, or the parts of a partitioned one with the
    offset of each part in the full value (from the part's public ``VariableDef``)."""

    name: str
    parts: tuple[tuple[Any, tuple[int, ...]], ...]
    partitioned: bool

    @property
    def variables(self) -> list[Any]:
        return [v for v, _ in self.parts]

    @property
    def saveable(self) -> Any:
        """What ``Saver(var_list={key: ...})`` takes: the variable, or the list of its parts."""
        return self.variables if self.partitioned else self.parts[0][0]

    def split(self, value: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        """(part variable, its slice of the full ``value``) for every part."""
        if not self.partitioned:
            return [(self.parts[0][0], value)]
        out = []
        for variable, offset in self.parts:
            shape = variable.shape.as_list()
            region = tuple(slice(o, o + n) for o, n in zip(offset, shape))
            out.append((variable, np.ascontiguousarray(value[region])))
        return out

    def assemble(self, values: list[np.ndarray], full_shape: tuple[int, ...]) -> np.ndarray:
        """The full value from the values of the parts (in ``parts`` order)."""
        if not self.partitioned:
            return values[0]
        out = np.empty(full_shape, dtype=values[0].dtype)
        for (_, offset), value in zip(self.parts, values):
            out[tuple(slice(o, o + n) for o, n in zip(offset, value.shape))] = value
        return out


def graph_variables(graph: Any) -> dict[str, GraphVar]:
    """The global variables of ``graph`` by the names :func:`table_from_graph` gives them:
    op names, and full names for partitioned variables (whose parts carry a ``save_slice_info_def``
    in their public ``to_proto()``; no private ``_get_save_slice_info`` needed)."""
    tf = quiet_import("tensorflow")

    plain: dict[str, GraphVar] = {}
    parts: dict[str, list[tuple[Any, tuple[int, ...]]]] = {}
    for variable in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
        with graph.as_default():  # to_proto refuses to run eagerly (TF2's default), even for a graph variable
            var_def = variable.to_proto()
        if var_def.HasField("save_slice_info_def"):
            info = var_def.save_slice_info_def
            parts.setdefault(info.full_name, []).append((variable, tuple(int(o) for o in info.var_offset)))
        else:
            name = variable.op.name
            plain[name] = GraphVar(name, ((variable, ()),), False)
    for name, group in parts.items():
        group.sort(key=lambda p: p[1])
        plain[name] = GraphVar(name, tuple(group), True)
    return plain


class GraphAssigner:
    """Assigns NumPy values to variables of one TF1 graph, through the session that runs it.

    Each variable (partition part) gets one placeholder and one assign op, named
    ``warmstart/assign/<variable op name>/{value,assign}``; later calls on the same graph find and
    reuse them instead of growing the graph (useful for repeated ``copy_variables`` syncs).
    """

    def __init__(self, graph: Any, session: Any):
        self.graph = graph
        self.session = session
        self._ops: dict[str, tuple[Any, Any]] = {}

    def prepare(self, variables: Iterable[Any]) -> None:
        """Create (or find) the ops of ``variables`` up front, before any value is read."""
        for variable in variables:
            self._op(variable)

    def _op(self, variable: Any) -> tuple[Any, Any]:
        tf = quiet_import("tensorflow")

        name = variable.op.name
        if name in self._ops:
            return self._ops[name]
        base = f"warmstart/assign/{name}"
        dtype = variable.dtype.base_dtype
        try:
            placeholder = self.graph.get_tensor_by_name(base + "/value:0")
            op = self.graph.get_operation_by_name(base + "/assign")
            if placeholder.dtype != dtype:
                raise KeyError(base)
        except KeyError:
            with self.graph.as_default(), self.graph.name_scope(base + "/"):
                placeholder = tf.compat.v1.placeholder(dtype, shape=variable.shape, name="value")
                op = variable.assign(placeholder, read_value=False, name="assign")
        self._ops[name] = (placeholder, op)
        return placeholder, op

    def assign(self, pairs: list[tuple[Any, np.ndarray]]) -> None:
        """Assign every (variable, value) pair in one ``session.run``."""
        if not pairs:
            return
        ops, feed = [], {}
        for variable, value in pairs:
            placeholder, op = self._op(variable)
            ops.append(op)
            feed[placeholder] = value
        self.session.run(ops, feed_dict=feed)


def check_open(session: Any, what: str) -> None:
    try:
        session.run([])
    except RuntimeError as exc:
        raise UsageError(f"{what}: the session is closed ({exc}): pass an open session") from None


def check_not_finalized(graph: Any, what: str) -> None:
    if graph.finalized:
        raise UsageError(
            f"{what}: the graph is finalized (as MonitoredSession does), but warmstart must add assign and save "
            "ops to it: pass a session whose graph is not finalized"
        )


def uninitialized(graph: Any, session: Any, variables: list[Any]) -> list[str]:
    """Names of ``variables`` without a value in ``session`` (adds one report op to ``graph``)."""
    tf = quiet_import("tensorflow")

    if not variables:
        return []
    with graph.as_default():
        report = tf.compat.v1.report_uninitialized_variables(variables)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in session.run(report)]


def scoped_saver(graph: Any, var_list: Any) -> Any:
    """A TF1 Saver in ``graph`` (which must be the default graph) under a name scope of its own.

    Without a name, a Saver added to an imported MetaGraph puts its ops under the imported saver's
    ``save/`` scope, where ``save/AssignVariableOp_1`` .. ``_N`` already exist: TF's
    ``Graph.unique_name`` then walks all N suffixes for every new op (quadratic; 17.5 of 41.7 s for
    4,000 variables). A fresh scope makes every name new.
    """
    tf = quiet_import("tensorflow")

    return tf.compat.v1.train.Saver(var_list=var_list, sharded=False, name=graph.unique_name("warmstart_saver", mark_as_used=False))


def read_graph_values(session: Any, graph_vars: list[GraphVar], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The full values of ``graph_vars`` from one ``session.run``; raises
    :class:`UninitializedVariableError` naming the first variable without a value."""
    tf = quiet_import("tensorflow")

    fetches = [v for gv in graph_vars for v in gv.variables]
    try:
        flat = session.run(fetches)
    except tf.errors.FailedPreconditionError:
        for gv in graph_vars:
            for v in gv.variables:
                try:
                    session.run(v)
                except tf.errors.FailedPreconditionError:
                    raise UninitializedVariableError(
                        f"source variable {gv.name!r} is not initialized in the source session: run its initializer "
                        "(or restore a checkpoint) there first"
                    ) from None
        raise
    out, i = [], 0
    for gv, shape in zip(graph_vars, shapes):
        n = len(gv.parts)
        out.append(gv.assemble([np.asarray(x) for x in flat[i:i + n]], shape))
        i += n
    return out

