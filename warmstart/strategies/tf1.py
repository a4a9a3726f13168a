"""``restore`` and ``assign`` into a TF1 target: a MetaGraph, a TF1 template checkpoint (with its
``.meta``), a builder's graph, or a live graph or session; saved with a TF1 ``Saver``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._quiet import quiet_import
from .. import storage
from ..errors import TargetError, UsageError
from ..formats.bundle import BundleReader
from ..planning import TRANSFERRED, Plan, PlanEntry
from ..formats import CHECKPOINT_NAME, resolve_checkpoint
from ..formats.saver_keys import saver_keys
from ..tables import VariableTable, parse_meta_graph, run_builder, table_from_graph, target_kind
from .remap import remap_from
from .sources import SourceReaders
from .tf1_graphs import (
    GraphAssigner,
    GraphVar,
    check_not_finalized,
    check_open,
    graph_variables,
    read_graph_values,
    scoped_saver,
    uninitialized,
)
from .tf_common import (
    Progress,
    ProgressTracker,
    TFResult,
    UninitializedVariableError,
    batches,
    by_source,
    cast_value,
    check_built,
    local_checkpoint_copy,
    local_source_prefix,
    source_sizes,
    target_url,
    tf_call,
)

__all__ = ["run_tf1"]


@dataclass
class _Tf1Target:
    graph: Any
    session: Any
    owned: bool  # True: warmstart created the session and closes it
    initial: str  # "initializers" | "template" | "live"
    template: BundleReader | None = None
    what: str = "the target"
    unsaved: frozenset[str] = frozenset()  # a template's: the variables its .meta's Saver does not save

    def table(self) -> VariableTable:
        """The variables built, as planned: a template's without those its Saver does not save (the template
        cannot hold them, the output does not either: the user's restore does not read them)."""
        built = table_from_graph(self.graph, self.what)
        if not self.unsaved:
            return built
        return VariableTable.of([v for v in built.variables if v.name not in self.unsaved], built.origin, built.kind)


def run_tf1(strategy, plan: Plan, target: Any, source: BundleReader | SourceReaders, workdir: str,
             progress: Progress | None, storage_options, out_dir: str) -> TFResult:
    readers = SourceReaders.of(source, plan)
    built = _build_tf1_target(plan, target, storage_options)
    try:
        graph, session = built.graph, built.session
        check_built(plan.target, built.table(), built.what)
        variables = graph_variables(graph)
        _set_initial_values(plan, built, variables, workdir)
        sizes = source_sizes(readers)
        fill = _Tf1Fill(built, variables, sizes, ProgressTracker(plan, sizes, progress), GraphAssigner(graph, session))
        copies = [e for e in plan.transferred if e.action == "copy"]
        casts = [e for e in plan.transferred if e.action == "cast"]
        pending = copies + casts
        if strategy == "restore":
            # each source's copies restored from its own checkpoint, by a Saver of their own
            for name, group in readers.by_source(copies).items():
                fill.restore(readers.readers[name], group, workdir, name)
            pending = casts
        fill.assign(pending, lambda batch: (readers.read(e) for e in batch))
        fill.assign([e for e in plan.transferred if e.action == "remap"], lambda batch: (
            remap_from(readers.reader_for(e), e, lambda e=e: fill.current(e)) for e in batch))
        prefix_out = os.path.join(out_dir, CHECKPOINT_NAME)
        with graph.as_default():
            # every variable under its planned key: the one the target's own Saver restores (a MetaGraph's
            # saver_def may store variables under other keys than their names)
            saver = scoped_saver(graph, {e.target_key: variables[e.target].saveable for e in plan.entries})
            tf_call(f"saving {built.what}", saver.save, session, prefix_out, write_meta_graph=False,
                     write_state=False)
        return TFResult(prefix_out, None, fill.tracker.total)
    finally:
        if built.owned:
            built.session.close()


@dataclass
class _Tf1Fill:
    """Fills the variables of a built TF1 target, in batches, advancing the progress per entry."""

    built: _Tf1Target
    variables: dict[str, GraphVar]
    sizes: Callable[[PlanEntry], int]
    tracker: ProgressTracker
    assigner: GraphAssigner

    def restore(self, source: BundleReader, copies: list[PlanEntry], workdir: str, name: str = "main") -> None:
        """TF restores every source key of ``copies`` (all of the source ``source``, named ``name``) once,
        into its first target (a ``Saver``'s ``var_list`` holds one variable per key); the other targets of
        a shared key get that value."""
        if not copies:
            return
        groups = by_source(copies)
        firsts = [group[0] for group in groups.values()]
        prefix = local_source_prefix(source, groups, workdir, name)
        graph = self.built.graph
        for batch in batches(firsts, self.sizes):
            with graph.as_default():
                saver = scoped_saver(graph, {e.source_key: self.variables[e.target].saveable for e in batch})
                tf_call(f"restoring from {source.url}", saver.restore, self.built.session, prefix)
            self._advance(batch)
        shared = [e for group in groups.values() for e in group[1:]]
        self.assign(shared, lambda batch: self.read([groups[e.source_key][0] for e in batch]))  # type: ignore[index]

    def read(self, entries: list[PlanEntry]) -> list[np.ndarray]:
        """The values the targets of ``entries`` hold now (partitioned ones as one full value)."""
        return read_graph_values(self.built.session, [self.variables[e.target] for e in entries],
                                  [e.source_shape for e in entries])  # type: ignore[misc]

    def current(self, entry: PlanEntry) -> np.ndarray:
        """The value the target of ``entry`` holds now, in the target's shape."""
        return read_graph_values(self.built.session, [self.variables[entry.target]], [entry.shape])[0]  # type: ignore[list-item]

    def assign(self, entries: list[PlanEntry], values: Callable[[list[PlanEntry]], Iterable[np.ndarray]]) -> None:
        """Assign to the targets of ``entries`` their ``values(batch)`` (cast for ``cast`` entries)."""
        for batch in batches(entries, self.sizes):
            pairs = []
            for e, value in zip(batch, values(batch)):
                pairs.extend(self.variables[e.target].split(cast_value(value, e)))
            tf_call(f"assigning into {self.built.what}", self.assigner.assign, pairs)
            self._advance(batch)

    def _advance(self, batch: list[PlanEntry]) -> None:
        for e in batch:
            self.tracker.advance(e)


def _build_tf1_target(plan: Plan, target: Any, storage_options) -> _Tf1Target:
    """The graph and session of a TF1 target, and how its non-transferred variables get their values."""
    tf = quiet_import("tensorflow")

    if isinstance(target, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        return _live_session(target, "the target session")
    if isinstance(target, tf.Graph):
        check_not_finalized(target, "the target graph")
        return _Tf1Target(target, tf.compat.v1.Session(graph=target), True, "initializers", what="the target graph")
    target = target_url(target, plan, "a .meta, template checkpoint or py: builder target, or a live tf.Graph or Session")
    kind = target_kind(target)
    if kind == "meta-graph":
        loc = storage.resolve(target, storage_options)
        graph = _import_meta_graph(parse_meta_graph(storage.read_bytes(loc, storage.INDEX_BYTES), loc.url), loc.url)
        return _Tf1Target(graph, tf.compat.v1.Session(graph=graph), True, "initializers", what=loc.url)
    if kind == "checkpoint":
        prefix = resolve_checkpoint(target, storage_options)
        meta = prefix.with_suffix(".meta")
        if not meta.fs.exists(meta.path):
            raise UsageError(
                f"the restore and assign strategies build the target graph, but the template checkpoint {prefix.url} "
                f"has no {posixpath.basename(meta.path)} next to it: use --strategy stream, or give a .meta or "
                "py: builder target"
            )
        template = BundleReader.at_prefix(prefix)
        meta_graph = parse_meta_graph(storage.read_bytes(meta, storage.INDEX_BYTES), meta.url)
        graph = _import_meta_graph(meta_graph, meta.url)
        found = saver_keys(meta_graph, meta.url)
        return _Tf1Target(graph, tf.compat.v1.Session(graph=graph), True, "template", template=template,
                          what=meta.url, unsaved=frozenset(found.unsaved if found is not None else ()))
    if kind == "builder":
        built = run_builder(target)
        if isinstance(built, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
            return _live_session(built, f"the session builder {target} returned")
        if isinstance(built, tf.Graph):
            return _Tf1Target(built, tf.compat.v1.Session(graph=built), True, "initializers", what=f"builder {target}")
        raise TargetError(f"builder {target} returned a {type(built).__name__} this time; it was planned as a tf.Graph")
    raise UsageError(f"{target!r} is a {kind} target, but the plan is for a {plan.target.kind} target")


def _live_session(session: Any, what: str) -> _Tf1Target:
    check_open(session, what)
    check_not_finalized(session.graph, what)
    return _Tf1Target(session.graph, session, False, "live", what=what)


def _import_meta_graph(meta_graph: Any, url: str) -> Any:
    """A fresh ``tf.Graph`` holding the parsed MetaGraph ``meta_graph`` (devices cleared)."""
    tf = quiet_import("tensorflow")

    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as exc:
            raise TargetError(f"cannot import the MetaGraph {url}: {exc}") from None
    return graph


def _set_initial_values(plan: Plan, built: _Tf1Target, variables: dict[str, GraphVar], workdir: str) -> None:
    """Give every variable the plan does not fill its initial value (or check that it has one)."""
    tf = quiet_import("tensorflow")

    # remap entries too: their new rows keep the initial value
    kept = [e for e in plan.entries if e.action not in TRANSFERRED or e.action == "remap"]
    if not kept:
        return
    if built.initial == "live":
        missing = uninitialized(built.graph, built.session, [v for e in kept for v in variables[e.target].variables])
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise UninitializedVariableError(
                f"{built.what}: variable {missing[0]!r}{more} keeps its value by the plan but is not initialized: "
                "run the initializers (or restore a checkpoint) in the session first"
            )
    elif built.initial == "template":
        template = built.template
        assert template is not None
        keys = [e.target_key for e in kept]
        local = template.prefix.path if template.prefix.is_local else local_checkpoint_copy(
            template, os.path.join(workdir, "template"), keys=keys)
        # Saver.restore outside its graph's context rebuilds itself eagerly and fails: stay inside.
        with built.graph.as_default():
            saver = scoped_saver(built.graph, {e.target_key: variables[e.target].saveable for e in kept})
            tf_call(f"restoring initial values from {template.url}", saver.restore, built.session, local)
    else:
        initializers = [v.initializer for e in kept for v in variables[e.target].variables]
        try:
            built.session.run(initializers)
        except tf.errors.OpError as exc:
            raise TargetError(
                f"{built.what}: running the initializers of the variables the plan keeps failed "
                f"({type(exc).__name__}: {exc.message.strip().splitlines()[0]}). If they need fed values, give a "
                "template checkpoint (with its .meta) or a builder instead"
            ) from None

