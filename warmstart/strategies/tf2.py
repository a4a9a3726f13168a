"""``restore`` and ``assign`` into a TF2 target: a Keras model (``.keras`` file, builder or live) or a
``tf.Module``; saved with ``tf.train.Checkpoint`` (plus ``model.weights.h5`` for Keras models).
"""

from __future__ import annotations

import os
from typing import Any

from .._quiet import quiet_import
from .. import storage
from ..errors import TargetError, UsageError
from ..formats.bundle import BundleReader
from ..planning import Plan
from ..formats import CHECKPOINT_NAME, KERAS_WEIGHTS
from ..storage import written_aside
from ..tables import load_keras_model, local_file, run_builder, table_from_trackable, target_kind, trackable_variables
from .remap import remap_from
from .sources import SourceReaders
from .tf_common import (
    Progress,
    ProgressTracker,
    TFResult,
    batches,
    by_source,
    check_built,
    finalize_derived_state,
    local_source_prefix,
    source_sizes,
    target_url,
    target_value,
    tf_call,
)

__all__ = ["run_tf2"]


def run_tf2(strategy, plan: Plan, target: Any, source: BundleReader | SourceReaders, workdir: str,
             progress: Progress | None, storage_options, out_dir: str) -> TFResult:
    keras = quiet_import("keras")
    tf = quiet_import("tensorflow")

    readers = SourceReaders.of(source, plan)
    obj, what = _build_tf2_target(plan, target, storage_options)
    check_built(plan.target, table_from_trackable(obj, origin=what), what)
    variables = trackable_variables(obj)
    sizes = source_sizes(readers)
    tracker = ProgressTracker(plan, sizes, progress)
    copies = [e for e in plan.transferred if e.action == "copy"]
    pending = list(plan.transferred)
    if strategy == "restore" and copies:
        for name, group in readers.by_source(copies).items():  # each source from its own checkpoint
            _restore(readers.readers[name], group, variables, sizes, tracker, workdir, name)
        pending = [e for e in plan.transferred if e.action != "copy"]  # casts and remaps: read, then assigned
    for e in pending:
        value = target_value(readers, e) if e.action != "remap" else remap_from(
            readers.reader_for(e), e, variables[e.target].numpy)
        variables[e.target].assign(value)
        tracker.advance(e)
    finalize_derived_state(obj)  # a live target is used as it is afterwards
    prefix_out = os.path.join(out_dir, CHECKPOINT_NAME)
    checkpoint = tf.train.Checkpoint(model=obj)
    # write() alone leaves save_counter out, and Checkpoint(model=m).restore(...) then reports it
    # unmatched in assert_existing_objects_matched(); reading the property creates it (value 0).
    _ = checkpoint.save_counter
    checkpoint.write(prefix_out)
    weights = None
    if isinstance(obj, keras.Model):
        with written_aside(out_dir, KERAS_WEIGHTS) as partial:  # never a torn file under the final name
            obj.save_weights(partial)
        weights = os.path.join(out_dir, KERAS_WEIGHTS)
    return TFResult(prefix_out, weights, tracker.total)


def _restore(source: BundleReader, copies: list, variables, sizes, tracker: ProgressTracker, workdir: str,
             name: str) -> None:
    """TF restores the ``copies`` of one source checkpoint (``RestoreV2`` in batches) and assigns them; each
    source key is restored once, for all the targets sharing it."""
    tf = quiet_import("tensorflow")

    groups = by_source(copies)
    prefix = local_source_prefix(source, groups, workdir, name)
    for batch in batches(list(groups.values()), lambda group: sizes(group[0])):
        with tf.device("/cpu:0"):
            values = tf_call(
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


def _build_tf2_target(plan: Plan, target: Any, storage_options) -> tuple[Any, str]:
    """The Keras model or ``tf.Module`` to fill, and how to name it in messages."""
    keras = quiet_import("keras")
    tf = quiet_import("tensorflow")

    if isinstance(target, (keras.Layer, tf.Module)):
        return target, plan.target.origin
    target = target_url(target, plan, "a .keras or py: builder target, or a live Keras model or tf.Module")
    kind = target_kind(target)
    if kind == "keras":
        loc = storage.resolve(target, storage_options)
        with local_file(loc) as path:
            return load_keras_model(path, loc.url), loc.url
    if kind == "builder":
        built = run_builder(target)
        if not isinstance(built, (keras.Layer, tf.Module)):
            raise TargetError(f"builder {target} returned a {type(built).__name__} this time; it was planned as a "
                              f"{plan.target.kind}")
        return built, target
    raise UsageError(f"{target!r} is a {kind} target, but the plan is for a {plan.target.kind} target")

