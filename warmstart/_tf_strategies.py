"""The ``restore`` and ``assign`` strategies, and live copies between graphs and models.

Both strategies build the target (a TF1 graph in its own session, or a Keras model / ``tf.Module``),
fill the variables the plan transfers, and save the target with TensorFlow:

- ``restore``: TensorFlow reads the source checkpoint (TF1 ``Saver(var_list={source_key: variable})``,
  TF2 ``tf.raw_ops.RestoreV2`` then ``variable.assign``), in batches of about :data:`BATCH_BYTES` of
  stored bytes. TF 2.21 has no object-storage filesystem, so a remote source is first copied to the
  work directory (:func:`local_checkpoint_copy`: only the byte ranges of the tensors needed).
- ``assign``: warmstart's own reader reads each tensor (CRC-checked, from object storage directly)
  and assigns it: TF1 through a placeholder and an assign op run in the session that owns the graph,
  TF2 through ``variable.assign``.

``cast`` entries always go the ``assign`` way (TF's restore refuses a dtype mismatch); ``init`` and
``skip`` entries keep the target's initial value. Everything TensorFlow does runs in the calling
thread (TF1 default graphs and sessions are per thread); only downloads may use fsspec's own I/O.

Live targets (a ``tf.compat.v1.Session``, a Keras model, a ``tf.Module``) are modified IN PLACE: their
variables receive the transferred values, and a TF1 graph receives assign and save ops.

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import storage
from .errors import (
    CorruptCheckpointError,
    InputError,
    InputNotFoundError,
    PlanError,
    TargetError,
    UsageError,
)
from .formats import dtypes
from .formats.bundle import BundleReader, BundleWriter
from .planning import TRANSFERRED, Plan, PlanEntry, Report, Rules, load_rules, make_plan
from .storage import CHECKPOINT_NAME
from .stream import write_subset
from .tables import (
    VariableTable,
    load_keras_model,
    local_file,
    parse_meta_graph,
    run_builder,
    table_from_graph,
    table_from_trackable,
    target_kind,
    trackable_variables,
)

__all__ = [
    "TFResult",
    "UninitializedVariableError",
    "run",
    "local_checkpoint_copy",
    "copy_variables",
    "copy_weights",
    "BATCH_BYTES",
]

#: Upper bound of the stored bytes read, restored or fed per batch (one larger tensor is one batch).
BATCH_BYTES = 64 * 1024 * 1024
#: Size of one ranged read when copying a remote checkpoint to the work directory.
CHECKPOINT_BASENAME = CHECKPOINT_NAME  # TF saves straight into local outputs under the published name
KERAS_WEIGHTS_NAME = "model.weights.h5"

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TFResult:
    """What :func:`run` wrote: the local checkpoint ``prefix`` (``<prefix>.index`` and
    ``<prefix>.data-00000-of-00001``), ``model.weights.h5`` for Keras targets, and the stored
    bytes of the source tensors it read."""

    prefix: str
    keras_weights: str | None
    bytes_read: int


class UninitializedVariableError(InputError, ValueError):
    """A live graph's variable has no value (its initializer never ran, no checkpoint restored it)."""


# =========================================================================== entry point


def run(
    strategy: str,
    plan: Plan,
    target: Any,
    source: BundleReader,
    workdir: str,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
    out_dir: str | None = None,
) -> TFResult:
    """Execute an ok ``plan`` with the ``restore`` or ``assign`` strategy and save the target to
    ``<out_dir>/model.ckpt`` (plus ``<out_dir>/model.weights.h5`` for Keras targets); ``out_dir`` is a
    local directory, ``workdir`` (scratch space for source copies) unless given.

    ``target`` is what the plan was made for: a ``.meta``, ``.keras`` or TF1 template checkpoint URL
    (the template needs its ``<prefix>.meta``), a ``py:module:function`` builder, or a live
    ``tf.Graph``, ``tf.compat.v1.Session``, Keras model or ``tf.Module`` (live objects are modified
    in place). ``progress(done_bytes, total_bytes, target_name)`` is called after each variable.

    Raises :class:`UsageError` for a strategy or target these strategies cannot serve,
    :class:`TargetError` when the target cannot be built or differs from the planned one,
    :class:`UninitializedVariableError` when a live session holds uninitialized variables that
    the plan does not fill.
    """
    if strategy not in ("restore", "assign"):
        raise UsageError(f"_tf_strategies.run executes 'restore' or 'assign', not {strategy!r}")
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    kind = plan.target.kind
    out_dir = out_dir or workdir
    if kind in ("tf1-graph", "tf1-checkpoint"):
        return _run_tf1(strategy, plan, target, source, workdir, progress, storage_options, out_dir)
    if kind in ("keras", "module"):
        return _run_tf2(strategy, plan, target, source, workdir, progress, storage_options, out_dir)
    raise UsageError(
        f"the {strategy} strategy builds the target, but {plan.target.origin} is a {kind} with nothing to build: "
        "use --strategy stream, or give a .keras, .meta or py: builder target"
    )


class _Progress:
    """Cumulative progress over the transferred entries, by the source's stored bytes."""

    def __init__(self, plan: Plan, source_sizes: Callable[[PlanEntry], int], callback: Progress | None):
        self.size = source_sizes
        self.total = sum(source_sizes(e) for e in plan.transferred)
        self.done = 0
        self.callback = callback

    def advance(self, entry: PlanEntry) -> None:
        self.done += self.size(entry)
        if self.callback is not None:
            self.callback(self.done, self.total, entry.target)


def _batches(items: Sequence[Any], size: Callable[[Any], int], limit: int = BATCH_BYTES) -> Iterator[list[Any]]:
    """Consecutive groups of ``items`` whose sizes add up to at most ``limit`` (a larger item alone)."""
    batch: list[Any] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and total + n > limit:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def _target_value(source: BundleReader, entry: PlanEntry) -> np.ndarray:
    """The value ``entry`` puts into its target: the source tensor, cast to the target dtype for ``cast``."""
    value = source.read(entry.source_key)  # type: ignore[arg-type]
    return _cast(value, entry)


def _cast(value: np.ndarray, entry: PlanEntry) -> np.ndarray:
    if entry.action != "cast":
        return value
    target = dtypes.by_name(entry.dtype)
    if target.numpy is None:
        raise UsageError(f"target {entry.target!r}: cannot cast to {entry.dtype}")
    return np.asarray(value).astype(target.numpy)


def _source_prefix_for_tf(source: BundleReader, keys: Iterable[str], workdir: str) -> str:
    """A local prefix TensorFlow can open for ``keys`` of ``source``: its own, or a partial local copy."""
    if source.prefix.is_local:
        return source.prefix.path
    return local_checkpoint_copy(source, os.path.join(workdir, "source"), keys=keys)


def _check_built(planned: VariableTable, built: VariableTable, what: str) -> None:
    """Raise :class:`TargetError` when the target just built has other variables than the planned one."""
    problems = [f"{n!r} was planned but is not in it" for n in sorted(set(planned) - set(built))]
    problems += [f"{n!r} is in it but was not planned" for n in sorted(set(built) - set(planned))]
    for name in sorted(set(planned) & set(built)):
        p, b = planned[name], built[name]
        shapes_ok = len(p.shape) == len(b.shape) and all(
            x is None or y is None or x == y for x, y in zip(p.shape, b.shape))
        if p.dtype != b.dtype or not shapes_ok:
            problems.append(f"{name!r} is {b.dtype} {list(b.shape)}, planned as {p.dtype} {list(p.shape)}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TargetError(
            f"{what} does not match the planned target {planned.origin}: {problems[0]}{more}. "
            "Plan again against this target (a builder must return the same model every time)"
        )


# =========================================================================== remote sources


def local_checkpoint_copy(reader: BundleReader, dest_dir: str, keys: Iterable[str] | None = None) -> str:
    """A local copy of ``keys`` (default: every tensor) of the checkpoint ``reader`` reads, which
    TensorFlow can open (TF 2.21 cannot read ``s3://`` or ``gs://`` itself); returns its prefix.

    Only those tensors' byte ranges are read (merged, bounded, CRC-checked: see
    :func:`warmstart.stream.write_subset`). Raises :class:`InputNotFoundError` for an unknown key,
    :class:`StorageError` when reading or writing fails.
    """
    os.makedirs(dest_dir, exist_ok=True)
    prefix = os.path.join(dest_dir, posixpath.basename(reader.prefix.path))
    writer = BundleWriter(storage.resolve(prefix))
    try:
        write_subset(reader, sorted(reader.records if keys is None else set(keys)), writer)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return prefix


# =========================================================================== TF1 graphs


@dataclass(frozen=True)
class _GraphVar:
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


def _graph_variables(graph: Any) -> dict[str, _GraphVar]:
    """The global variables of ``graph`` by the names :func:`table_from_graph` gives them:
    op names, and full names for partitioned variables (whose parts carry a ``save_slice_info_def``
    in their public ``to_proto()``; no private ``_get_save_slice_info`` needed)."""
    import tensorflow as tf

    plain: dict[str, _GraphVar] = {}
    parts: dict[str, list[tuple[Any, tuple[int, ...]]]] = {}
    for variable in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
        with graph.as_default():  # to_proto refuses to run eagerly (TF2's default), even for a graph variable
            var_def = variable.to_proto()
        if var_def.HasField("save_slice_info_def"):
            info = var_def.save_slice_info_def
            parts.setdefault(info.full_name, []).append((variable, tuple(int(o) for o in info.var_offset)))
        else:
            name = variable.op.name
            plain[name] = _GraphVar(name, ((variable, ()),), False)
    for name, group in parts.items():
        group.sort(key=lambda p: p[1])
        plain[name] = _GraphVar(name, tuple(group), True)
    return plain


def _all_global_variables(graph: Any) -> list[Any]:
    import tensorflow as tf

    return list(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))


class _GraphAssigner:
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
        import tensorflow as tf

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


def _check_open(session: Any, what: str) -> None:
    try:
        session.run([])
    except RuntimeError as exc:
        raise UsageError(f"{what}: the session is closed ({exc}): pass an open session") from None


def _check_not_finalized(graph: Any, what: str) -> None:
    if graph.finalized:
        raise UsageError(
            f"{what}: the graph is finalized (as MonitoredSession does), but warmstart must add assign and save "
            "ops to it: pass a session whose graph is not finalized"
        )


def _uninitialized(graph: Any, session: Any, variables: list[Any]) -> list[str]:
    """Names of ``variables`` without a value in ``session`` (adds one report op to ``graph``)."""
    import tensorflow as tf

    if not variables:
        return []
    with graph.as_default():
        report = tf.compat.v1.report_uninitialized_variables(variables)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in session.run(report)]


@dataclass
class _Tf1Target:
    graph: Any
    session: Any
    owned: bool  # True: warmstart created the session and closes it
    initial: str  # "initializers" | "template" | "live"
    template: BundleReader | None = None
    what: str = "the target"


def _run_tf1(strategy, plan: Plan, target: Any, source: BundleReader, workdir: str,
             progress: Progress | None, storage_options, out_dir: str) -> TFResult:
    built = _build_tf1_target(plan, target, storage_options)
    try:
        graph, session = built.graph, built.session
        _check_built(plan.target, table_from_graph(graph, built.what), built.what)
        variables = _graph_variables(graph)
        _set_initial_values(plan, built, variables, workdir)
        sizes = _source_sizes(source)
        fill = _Tf1Fill(built, variables, sizes, _Progress(plan, sizes, progress), _GraphAssigner(graph, session))
        copies = [e for e in plan.transferred if e.action == "copy"]
        casts = [e for e in plan.transferred if e.action == "cast"]
        if strategy == "restore":
            fill.restore(source, copies, workdir)
            pending = casts
        else:
            pending = copies + casts
        fill.assign(pending, lambda batch: (source.read(e.source_key) for e in batch))  # type: ignore[arg-type]
        prefix_out = os.path.join(out_dir, CHECKPOINT_BASENAME)
        with graph.as_default():
            saver = _saver(graph, _all_global_variables(graph))
            _tf_call(f"saving {built.what}", saver.save, session, prefix_out, write_meta_graph=False,
                     write_state=False)
        return TFResult(prefix_out, None, fill.tracker.total)
    finally:
        if built.owned:
            built.session.close()


def _by_source(entries: Iterable[PlanEntry]) -> dict[str, list[PlanEntry]]:
    """``entries`` grouped by source key, in order of first use: with ``allow_shared_source`` several
    targets read one key, so anything keyed by source key must hold a list of targets, not one."""
    groups: dict[str, list[PlanEntry]] = {}
    for e in entries:
        groups.setdefault(e.source_key, []).append(e)  # type: ignore[arg-type]
    return groups


@dataclass
class _Tf1Fill:
    """Fills the variables of a built TF1 target, in batches, advancing the progress per entry."""

    built: _Tf1Target
    variables: dict[str, _GraphVar]
    sizes: Callable[[PlanEntry], int]
    tracker: _Progress
    assigner: _GraphAssigner

    def restore(self, source: BundleReader, copies: list[PlanEntry], workdir: str) -> None:
        """TF restores every source key of ``copies`` once, into its first target (a ``Saver``'s
        ``var_list`` holds one variable per key); the other targets of a shared key get that value."""
        if not copies:
            return
        groups = _by_source(copies)
        firsts = [group[0] for group in groups.values()]
        prefix = _source_prefix_for_tf(source, groups, workdir)
        graph = self.built.graph
        for batch in _batches(firsts, self.sizes):
            with graph.as_default():
                saver = _saver(graph, {e.source_key: self.variables[e.target].saveable for e in batch})
                _tf_call(f"restoring from {source.url}", saver.restore, self.built.session, prefix)
            self._advance(batch)
        shared = [e for group in groups.values() for e in group[1:]]
        self.assign(shared, lambda batch: self.read([groups[e.source_key][0] for e in batch]))  # type: ignore[index]

    def read(self, entries: list[PlanEntry]) -> list[np.ndarray]:
        """The values the targets of ``entries`` hold now (partitioned ones as one full value)."""
        return _read_graph_values(self.built.session, [self.variables[e.target] for e in entries],
                                  [e.source_shape for e in entries])  # type: ignore[misc]

    def assign(self, entries: list[PlanEntry], values: Callable[[list[PlanEntry]], Iterable[np.ndarray]]) -> None:
        """Assign to the targets of ``entries`` their ``values(batch)`` (cast for ``cast`` entries)."""
        for batch in _batches(entries, self.sizes):
            pairs = []
            for e, value in zip(batch, values(batch)):
                pairs.extend(self.variables[e.target].split(_cast(value, e)))
            _tf_call(f"assigning into {self.built.what}", self.assigner.assign, pairs)
            self._advance(batch)

    def _advance(self, batch: list[PlanEntry]) -> None:
        for e in batch:
            self.tracker.advance(e)


def _saver(graph: Any, var_list: Any) -> Any:
    """A TF1 Saver in ``graph`` (which must be the default graph) under a name scope of its own.

    Without a name, a Saver added to an imported MetaGraph puts its ops under the imported saver's
    ``save/`` scope, where ``save/AssignVariableOp_1`` .. ``_N`` already exist: TF's
    ``Graph.unique_name`` then walks all N suffixes for every new op (quadratic; 17.5 of 41.7 s for
    4,000 variables). A fresh scope makes every name new.
    """
    import tensorflow as tf

    return tf.compat.v1.train.Saver(var_list=var_list, sharded=False, name=graph.unique_name("warmstart_saver", mark_as_used=False))


def _source_sizes(source: BundleReader) -> Callable[[PlanEntry], int]:
    return lambda e: source.records[e.source_key].stored_bytes  # type: ignore[index]


def _tf_call(doing: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a TF call; a TF runtime error becomes a warmstart error saying what was being done:
    corrupt data (a CRC mismatch) a :class:`CorruptCheckpointError`, a missing file or tensor an
    :class:`InputNotFoundError`, anything else a :class:`TargetError`."""
    import tensorflow as tf

    try:
        return fn(*args, **kwargs)
    except tf.errors.OpError as exc:
        message = f"{doing} failed: {type(exc).__name__}: {_tf_error_text(exc.message)}"
        if isinstance(exc, tf.errors.DataLossError):
            raise CorruptCheckpointError(message) from exc
        if isinstance(exc, tf.errors.NotFoundError):
            raise InputNotFoundError(message) from exc
        raise TargetError(message) from exc


def _tf_error_text(message: str) -> str:
    """The cause in a TF runtime error message, without the Python stack TF appends in graph mode
    ("Graph execution error: Detected at node ... defined at (most recent call last): File ...")."""
    kept = []
    for line in message.strip().splitlines():
        text = line.strip()
        if (not text or line[:1].isspace() or text.startswith(("Graph execution error", "Detected at node", "Node:", "[["))
                or text.endswith("(most recent call last):")):
            continue
        kept.append(text)
    return " ".join(kept) or message.strip()


def _build_tf1_target(plan: Plan, target: Any, storage_options) -> _Tf1Target:
    """The graph and session of a TF1 target, and how its non-transferred variables get their values."""
    import tensorflow as tf

    if isinstance(target, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        return _live_session(target, "the target session")
    if isinstance(target, tf.Graph):
        _check_not_finalized(target, "the target graph")
        return _Tf1Target(target, tf.compat.v1.Session(graph=target), True, "initializers", what="the target graph")
    if hasattr(target, "__fspath__"):
        target = str(target)
    if not isinstance(target, str):
        raise UsageError(
            f"a {plan.target.kind} plan needs a .meta, template checkpoint or py: builder target, or a live tf.Graph "
            f"or Session; received a {type(target).__name__}"
        )
    kind = target_kind(target)
    if kind == "meta-graph":
        loc = storage.resolve(target, storage_options)
        graph = _import_meta_graph(storage.read_bytes(loc), loc.url)
        return _Tf1Target(graph, tf.compat.v1.Session(graph=graph), True, "initializers", what=loc.url)
    if kind == "checkpoint":
        prefix = storage.resolve_checkpoint(target, storage_options)
        meta = prefix.with_suffix(".meta")
        if not meta.fs.exists(meta.path):
            raise UsageError(
                f"the restore and assign strategies build the target graph, but the template checkpoint {prefix.url} "
                f"has no {posixpath.basename(meta.path)} next to it: use --strategy stream, or give a .meta or "
                "py: builder target"
            )
        template = BundleReader.at_prefix(prefix)
        graph = _import_meta_graph(storage.read_bytes(meta), meta.url)
        return _Tf1Target(graph, tf.compat.v1.Session(graph=graph), True, "template", template=template,
                          what=meta.url)
    if kind == "builder":
        built = _call_builder(target)
        if isinstance(built, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
            return _live_session(built, f"the session builder {target} returned")
        if isinstance(built, tf.Graph):
            return _Tf1Target(built, tf.compat.v1.Session(graph=built), True, "initializers", what=f"builder {target}")
        raise TargetError(f"builder {target} returned a {type(built).__name__} this time; it was planned as a tf.Graph")
    raise UsageError(f"{target!r} is a {kind} target, but the plan is for a {plan.target.kind} target")


def _call_builder(spec: str) -> Any:
    """Import and call the builder ``py:module:function`` again (as planning did), with the same errors."""
    return run_builder(spec)


def _live_session(session: Any, what: str) -> _Tf1Target:
    _check_open(session, what)
    _check_not_finalized(session.graph, what)
    return _Tf1Target(session.graph, session, False, "live", what=what)


def _import_meta_graph(data: bytes, url: str) -> Any:
    """A fresh ``tf.Graph`` holding the MetaGraph in ``data`` (binary or text format, devices cleared)."""
    import tensorflow as tf

    meta_graph = parse_meta_graph(data, url)
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        except (ValueError, KeyError, TypeError, tf.errors.OpError) as exc:
            raise TargetError(f"cannot import the MetaGraph {url}: {exc}") from None
    return graph


def _set_initial_values(plan: Plan, built: _Tf1Target, variables: dict[str, _GraphVar], workdir: str) -> None:
    """Give every variable the plan does not fill its initial value (or check that it has one)."""
    import tensorflow as tf

    kept = [e for e in plan.entries if e.action not in TRANSFERRED]
    if not kept:
        return
    if built.initial == "live":
        missing = _uninitialized(built.graph, built.session, [v for e in kept for v in variables[e.target].variables])
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
            saver = _saver(built.graph, {e.target_key: variables[e.target].saveable for e in kept})
            _tf_call(f"restoring initial values from {template.url}", saver.restore, built.session, local)
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


# =========================================================================== TF2 / Keras


def _run_tf2(strategy, plan: Plan, target: Any, source: BundleReader, workdir: str,
             progress: Progress | None, storage_options, out_dir: str) -> TFResult:
    import keras
    import tensorflow as tf

    obj, what = _build_tf2_target(plan, target, storage_options)
    _check_built(plan.target, table_from_trackable(obj, origin=what), what)
    variables = trackable_variables(obj)
    sizes = _source_sizes(source)
    tracker = _Progress(plan, sizes, progress)
    copies = [e for e in plan.transferred if e.action == "copy"]
    pending = list(plan.transferred)
    if strategy == "restore" and copies:
        groups = _by_source(copies)  # each source key is restored once, for all the targets sharing it
        prefix = _source_prefix_for_tf(source, groups, workdir)
        for batch in _batches(list(groups.values()), lambda group: sizes(group[0])):
            with tf.device("/cpu:0"):
                values = _tf_call(
                    f"restoring from {source.url}", tf.raw_ops.RestoreV2,
                    prefix=prefix,
                    tensor_names=[group[0].source_key for group in batch],
                    shape_and_slices=[""] * len(batch),
                    dtypes=[tf.as_dtype(group[0].dtype) for group in batch],
                )
            for group, value in zip(batch, values):
                for e in group:
                    variables[e.target].assign(value)
                    tracker.advance(e)
            del values
        pending = [e for e in plan.transferred if e.action == "cast"]
    for e in pending:
        variables[e.target].assign(_target_value(source, e))
        tracker.advance(e)
    prefix_out = os.path.join(out_dir, CHECKPOINT_BASENAME)
    checkpoint = tf.train.Checkpoint(model=obj)
    # write() alone leaves save_counter out, and Checkpoint(model=m).restore(...) then reports it
    # unmatched in assert_existing_objects_matched(); reading the property creates it (value 0).
    _ = checkpoint.save_counter
    checkpoint.write(prefix_out)
    weights = None
    if isinstance(obj, keras.Model):
        weights = os.path.join(out_dir, KERAS_WEIGHTS_NAME)
        obj.save_weights(weights)
    return TFResult(prefix_out, weights, tracker.total)


def _build_tf2_target(plan: Plan, target: Any, storage_options) -> tuple[Any, str]:
    """The Keras model or ``tf.Module`` to fill, and how to name it in messages."""
    import keras
    import tensorflow as tf

    if isinstance(target, (keras.Layer, tf.Module)):
        return target, plan.target.origin
    if hasattr(target, "__fspath__"):
        target = str(target)
    if not isinstance(target, str):
        raise UsageError(
            f"a {plan.target.kind} plan needs a .keras or py: builder target, or a live Keras model or tf.Module; "
            f"received a {type(target).__name__}"
        )
    kind = target_kind(target)
    if kind == "keras":
        loc = storage.resolve(target, storage_options)
        with local_file(loc) as path:
            return load_keras_model(path, loc.url), loc.url
    if kind == "builder":
        built = _call_builder(target)
        if not isinstance(built, (keras.Layer, tf.Module)):
            raise TargetError(f"builder {target} returned a {type(built).__name__} this time; it was planned as a "
                              f"{plan.target.kind}")
        return built, target
    raise UsageError(f"{target!r} is a {kind} target, but the plan is for a {plan.target.kind} target")


# =========================================================================== live copies


def _session_arg(arg: Any, what: str) -> tuple[Any, Any]:
    """(graph, session) of a ``Session`` or a ``(graph, session)`` pair; raises :class:`UsageError`."""
    import tensorflow as tf

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
    _check_open(session, what)
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
    _check_not_finalized(dst_graph, "dst_session")
    plan = make_plan(table_from_graph(src_graph, "source graph"), table_from_graph(dst_graph, "destination graph"),
                     load_rules(rules))
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    src_vars, dst_vars = _graph_variables(src_graph), _graph_variables(dst_graph)
    assigner = _GraphAssigner(dst_graph, dst)
    entries = list(plan.transferred)
    assigner.prepare(v for e in entries for v in dst_vars[e.target].variables)
    limit = BATCH_BYTES if not _overlaps(plan, src_graph is dst_graph) else None
    bytes_read = 0
    for batch in (_batches(entries, lambda e: plan.source[e.source].nbytes or 0, limit) if limit else [entries]):
        values = _read_graph_values(src, [src_vars[e.source] for e in batch],
                                    [plan.source[e.source].shape for e in batch])
        pairs = []
        for e, value in zip(batch, values):
            bytes_read += _nbytes(value)
            pairs.extend(dst_vars[e.target].split(_cast(value, e)))
        _tf_call("assigning into the destination session", assigner.assign, pairs)
    return Report(plan=plan, strategy="assign", bytes_read=bytes_read)


def _overlaps(plan: Plan, same_object: bool) -> bool:
    """True when, within one graph/model, a variable is both read and written: then every value is
    read before the first is assigned (one batch), or a later read would see an earlier write."""
    if not same_object:
        return False
    written = {e.target for e in plan.transferred}
    return any(e.source in written and e.source != e.target for e in plan.transferred)


def _read_graph_values(session: Any, graph_vars: list[_GraphVar], shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The full values of ``graph_vars`` from one ``session.run``; raises
    :class:`UninitializedVariableError` naming the first variable without a value."""
    import tensorflow as tf

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


def _nbytes(value: np.ndarray) -> int:
    if value.dtype == object:
        return sum(len(x) for x in value.flat)
    return int(value.nbytes)


def copy_weights(src_model: Any, dst_model: Any, rules: Rules | dict[str, Any] | str | None = None) -> Report:
    """TF2/Keras: copy the weights of ``src_model`` into ``dst_model`` (modified in place), matched by
    variable path (``model/enc/_kernel``, as ``tf.train.Checkpoint(model=...)`` names them), never by
    the position in ``get_weights()``.

    Both may be Keras models (or layers) or ``tf.Module``s. A failing plan raises :class:`PlanError`
    before anything is touched; unbuilt Keras models raise :class:`TargetError`.
    """

    plan = make_plan(table_from_trackable(src_model), table_from_trackable(dst_model), load_rules(rules))
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    src_vars, dst_vars = trackable_variables(src_model), trackable_variables(dst_model)
    entries = list(plan.transferred)
    bytes_read = 0
    if _overlaps(plan, src_model is dst_model):
        values = [np.asarray(src_vars[e.source].numpy()) for e in entries]
    else:
        values = (np.asarray(src_vars[e.source].numpy()) for e in entries)  # type: ignore[assignment]
    for e, value in zip(entries, values):
        bytes_read += _nbytes(value)
        dst_vars[e.target].assign(_cast(value, e))
    return Report(plan=plan, strategy="assign", bytes_read=bytes_read)
