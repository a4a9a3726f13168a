"""Live copies: TF1 session to session (:func:`copy_variables`) and Keras model / ``tf.Module`` to
model (:func:`copy_weights`), planned by name like every transfer, modified in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .._quiet import quiet_import
from ..errors import PlanError, UsageError
from ..planning import PlanEntry, Report, Rules, load_rules, make_plan
from ..tables import table_from_graph, table_from_trackable, trackable_variables
from .remap import other_sources, remap_value
from .tf1_graphs import GraphAssigner, check_not_finalized, check_open, graph_variables, read_graph_values
from .tf_common import BATCH_BYTES, batches, cast_value, finalize_derived_state, overlaps, tf_call, value_nbytes

__all__ = ['copy_variables', 'copy_weights']


def _session_arg(arg: Any, what: str) -> tuple[Any, Any]:
    """(graph, session) of a ``Session`` or a ``(graph, session)`` pair; raises :class:`UsageError`."""
    tf = quiet_import("tensorflow")

    sessions = (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)
    if isinstance(arg, sessions):
        graph, session = arg.graph, arg
    elif (isinstance(arg, (tuple, list)) and len(arg) == 2 and isinstance(arg[0], tf.Graph)
          and isinstance(arg[1], sessions)):
        graph, session = arg
        if session.graph is not graph:
            raise UsageError(
                f"{what}: the session runs graph {id(session.graph):#x}, but the variables belong to graph "
                f"{id(graph):#x}: run each graph in its own session (tf.compat.v1.Session(graph=graph))"
            )
    else:
        raise UsageError(
            f"{what}: expected a tf.compat.v1.Session or a (tf.Graph, Session) pair; received {type(arg).__name__}"
        )
    check_open(session, what)
    return graph, session


def copy_variables(src_session: Any, dst_session: Any, rules: Rules | dict[str, Any] | str | None = None) -> Report:
    """TF1: copy variables from one live graph into another (or within one), by the plan.

    Each argument is a ``tf.compat.v1.Session`` or a ``(graph, session)`` pair. The plan is made
    from both graphs' variable tables and ``rules``; a failing plan raises :class:`PlanError`
    before anything is touched. Values are read in the SOURCE session (batches of about
    :data:`BATCH_BYTES`) and assigned in the DESTINATION session through placeholders and assign
    ops added once to the destination graph (and reused by later calls). Variables the plan keeps
    are not touched. Raises :class:`UninitializedVariableError` (an :class:`InputError`) naming a
    source variable that has no value, :class:`UsageError` for a closed session, a session of
    another graph, or a finalized destination graph.
    """

    src_graph, src = _session_arg(src_session, "src_session")
    dst_graph, dst = _session_arg(dst_session, "dst_session")
    check_not_finalized(dst_graph, "dst_session")
    plan = make_plan(table_from_graph(src_graph, "source graph"), table_from_graph(dst_graph, "destination graph"),
                     load_rules(rules))
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    src_vars, dst_vars = graph_variables(src_graph), graph_variables(dst_graph)
    assigner = GraphAssigner(dst_graph, dst)
    entries = list(plan.transferred)
    assigner.prepare(v for e in entries for v in dst_vars[e.target].variables)
    limit = BATCH_BYTES if not overlaps(plan, src_graph is dst_graph) else None
    bytes_read = 0
    for batch in (batches(entries, lambda e: plan.source[e.source].nbytes or 0, limit) if limit else [entries]):
        values = read_graph_values(src, [src_vars[e.source] for e in batch],
                                    [plan.source[e.source].shape for e in batch])
        pairs = []
        for e, value in zip(batch, values):
            bytes_read += value_nbytes(value)
            if e.remap is not None:
                others = read_graph_values(src, [src_vars[o.name] for o in other_sources(e)],
                                           [o.shape for o in other_sources(e)])
                value = remap_value(value, e, lambda e=e: read_graph_values(dst, [dst_vars[e.target]], [e.shape])[0],
                                    others)
            pairs.extend(dst_vars[e.target].split(cast_value(value, e)))
        tf_call("assigning into the destination session", assigner.assign, pairs)
    return Report(plan=plan, strategy="assign", bytes_read=bytes_read)


def copy_weights(src_model: Any, dst_model: Any, rules: Rules | dict[str, Any] | str | None = None) -> Report:
    """TF2/Keras: copy the weights of ``src_model`` into ``dst_model`` (modified in place), matched by name
    (Keras: ``variable.path``; a ``tf.Module``: the object path ``tf.train.Checkpoint(model=...)`` gives),
    never by the position in ``get_weights()``. Layers Keras named by counting (two models built in one
    process: ``dense_9``, ``dense_10``) are matched by the models' structure, as ``load_weights`` does, and
    each such match is flagged positional.

    Both may be Keras models (or layers) or ``tf.Module``s. A failing plan raises :class:`PlanError`
    before anything is touched; unbuilt Keras models raise :class:`TargetError`.
    """

    plan = make_plan(table_from_trackable(src_model), table_from_trackable(dst_model), load_rules(rules))
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    src_vars, dst_vars = trackable_variables(src_model), trackable_variables(dst_model)
    entries = list(plan.transferred)
    bytes_read = 0
    reads: Iterable[tuple[np.ndarray, list[np.ndarray]]] = (_read_sources(src_vars, e) for e in entries)
    if overlaps(plan, src_model is dst_model):  # every source read before the first write
        reads = list(reads)
    for e, (value, others) in zip(entries, reads):
        bytes_read += value_nbytes(value)
        if e.remap is not None:
            value = remap_value(value, e, dst_vars[e.target].numpy, others)
        dst_vars[e.target].assign(cast_value(value, e))
    finalize_derived_state(dst_model)
    return Report(plan=plan, strategy="assign", bytes_read=bytes_read)


def _read_sources(src_vars: dict[str, Any], e: PlanEntry) -> tuple[np.ndarray, list[np.ndarray]]:
    """The value of ``e``'s source variable and those of its concat's other sources."""
    return np.asarray(src_vars[e.source].numpy()), [np.asarray(src_vars[o.name].numpy()) for o in other_sources(e)]

