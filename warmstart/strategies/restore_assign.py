"""The ``restore`` and ``assign`` strategies: build the target with TensorFlow, fill it, save it.

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
variables receive the transferred values, and a TF1 graph receives assign and save ops. TF1 targets
are filled in :mod:`.tf1`, TF2 ones in :mod:`.tf2`, over the shared core in :mod:`.tf_common`.

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from ..errors import PlanError, UsageError
from ..formats.bundle import BundleReader
from ..planning import Plan
from .sources import SourceReaders
from .tf1 import run_tf1
from .tf2 import run_tf2
from .tf_common import Progress, TFResult

__all__ = ["restore_or_assign"]


def restore_or_assign(
    strategy: str,
    plan: Plan,
    target: Any,
    source: BundleReader | SourceReaders,
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
    in place). ``source``: the reader of a plan of one source, or the readers of several by name (each
    entry is read, or restored, from its own). ``progress(done_bytes, total_bytes, target_name)`` is
    called after each variable.

    Raises :class:`UsageError` for a strategy or target these strategies cannot serve,
    :class:`TargetError` when the target cannot be built or differs from the planned one,
    :class:`UninitializedVariableError` when a live session holds uninitialized variables that
    the plan does not fill.
    """
    if strategy not in ("restore", "assign"):
        raise UsageError(f"restore_or_assign executes 'restore' or 'assign', not {strategy!r}")
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    kind = plan.target.kind
    out_dir = out_dir or workdir
    if kind in ("tf1-graph", "tf1-checkpoint"):
        return run_tf1(strategy, plan, target, source, workdir, progress, storage_options, out_dir)
    if kind in ("keras", "module"):
        return run_tf2(strategy, plan, target, source, workdir, progress, storage_options, out_dir)
    raise UsageError(
        f"the {strategy} strategy builds the target, but {plan.target.origin} is a {kind} with nothing to build: "
        "use --strategy stream, or give a .keras, .meta or py: builder target"
    )

