"""The Keras models a certificate calls: the target loaded from the output the way users load it, and the source
with the source's weights.

The target model comes from the target itself (a ``.keras`` file's configuration, a builder, a live model) or
from ``verify: target_model`` (a ``.weights.h5`` template or a TF2 template checkpoint holds no layers); the
output is loaded into it as documented: ``model.load_weights`` of its Keras weights file, else
``tf.train.Checkpoint(model=...).restore`` of its checkpoint (which leaves derived state, a Normalization's
mean, as it was: that is what a user of such an output gets). The source model comes from a ``.keras`` source's
configuration, or ``verify: source_model`` / ``source_structure``; its variables that a comparison needs are read
from the source by warmstart's reader (the plan's names) and Keras' ``finalize_state`` runs, as when Keras loads
a model. TensorFlow and Keras are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, TargetError
from ..planning import MAIN_SOURCE, Plan, VerifyRules
from ..tables import (VariableTable, built_from_config, keras_file_model, run_builder, table_from_trackable,
                      target_kind, trackable_variables)
from ..storage import resolve
from .output import OutputFiles

__all__ = ["KerasSide", "target_side", "source_side"]


@dataclass
class KerasSide:
    """A Keras model and its variables by the plan's names (the target's or the source's)."""

    model: Any
    variables: dict[str, Any]
    described: str

    @property
    def names(self) -> dict[int, str]:
        return {id(v): name for name, v in self.variables.items()}


def plan_variables(model: Any, table: VariableTable) -> dict[str, Any]:
    """The live variables of ``model`` by the name ``table`` gives each (its own name, or one of its aliases: a
    weights path, Keras' structure key, a checkpoint key), where the shapes agree; each table name once."""
    live = table_from_trackable(model)
    variables = trackable_variables(model)
    out: dict[str, Any] = {}
    for v in live.variables:
        found = next((f for key in (v.name, *v.aliases) if (f := table.find(key)) is not None), None)
        if found is not None and found.name not in out and tuple(found.shape) == tuple(v.shape):
            out[found.name] = variables[v.name]
    return out


def _build(spec: str, storage_options, overwritten: bool = False) -> Any:
    """The model a ``.keras`` file or a ``py:`` builder describes (variables initialized, no weight read).
    ``overwritten``: every variable is overwritten before it is read (``load_weights`` loads every variable of
    every layer or raises), so a ``.keras`` file's model is built without initial values (see
    :func:`_unwritten_initializers`)."""
    if spec.startswith("py:"):
        return run_builder(spec)
    if not overwritten:
        return keras_file_model(spec, storage_options)
    import keras

    from ..tables.keras_files import _archive_config  # its limits (size, nesting, members) apply

    loc = resolve(spec, storage_options)
    config = _unwritten_initializers(_archive_config(loc))
    with keras.saving.custom_object_scope({_UNWRITTEN: _unwritten_class()}):
        return built_from_config(config, loc.url)


_UNWRITTEN = "WarmstartUnwritten"


def _unwritten_initializers(config: Any) -> Any:
    """A copy of a Keras configuration with every ``*_initializer`` of a layer's configuration an initializer that
    writes nothing: a variable of 1 MiB or more is memory allocated and not written (the kernel's zero pages: it
    costs no memory until ``load_weights`` writes it, so a model costs its size once, not its size plus the
    transients of each variable drawn, then read), a smaller one zeros. An initializer acts in training only: what
    a layer computes from loaded variables does not depend on it."""
    if isinstance(config, list):
        return [_unwritten_initializers(c) for c in config]
    if not isinstance(config, dict):
        return config
    return {k: _UNWRITTEN if k.endswith("_initializer") and v is not None else _unwritten_initializers(v)
            for k, v in config.items()}


def _unwritten_class() -> type:
    import keras
    import numpy as np
    import tensorflow as tf

    class Unwritten(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            dtype = tf.as_dtype(dtype or "float32")
            if int(np.prod(shape)) * dtype.size < 1 << 20:
                return tf.zeros(shape, dtype)
            return tf.raw_ops.Empty(shape=tf.constant(shape, tf.int32), dtype=dtype, init=False)

    return Unwritten


def target_side(plan: Plan, target: Any, rules: VerifyRules, output: OutputFiles,
                storage_options: dict[str, Any] | None = None) -> KerasSide | str:
    """The target model with the output loaded into it as documented, or why there is none (in words). Raises
    :class:`InputError` when the output cannot be loaded into it."""
    if not isinstance(target, (str, os.PathLike)):  # a live model (what else is not a URL was planned as one)
        model, what = target, "the live target model"
    elif rules.target_model is not None:
        model = _build(rules.target_model, storage_options, overwritten=bool(output.weights))
        what = f"verify.target_model {rules.target_model}"
    else:
        kind = target_kind(os.fspath(target))
        if plan.target.kind in ("tf1-checkpoint", "tf1-graph"):
            return ("no Keras layers: a TF1 target's computation is compared through output pairs declared under "
                    "verify: (a tensor of its graph against the source's)")
        if kind not in ("keras", "builder"):
            return (f"no target model: a {plan.target.kind} target holds no Keras layers; name the model with "
                    "verify: target_model (a .keras file or a py: builder)")
        model, what = _build(os.fspath(target), storage_options, overwritten=bool(output.weights)), os.fspath(target)
    _load_output(model, output)
    return KerasSide(model, plan_variables(model, plan.target), f"{what}, the output loaded by {output.describe()}")


def _load_output(model: Any, output: OutputFiles) -> None:
    import tensorflow as tf

    try:
        if output.weights:
            model.load_weights(output.weights)
            return
        status = tf.train.Checkpoint(model=model).restore(output.checkpoint).expect_partial()
        status.assert_nontrivial_match()
    except (ValueError, KeyError, TypeError, OSError, AssertionError, tf.errors.OpError) as exc:
        raise InputError(f"the output {output.url} does not load into the target model: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def source_side(plan: Plan, name: str, reader: Any, rules: VerifyRules, wanted: Iterable[str],
                storage_options: dict[str, Any] | None = None) -> KerasSide | str:
    """Source ``name``'s model with the ``wanted`` variables (plan names) read from ``reader``, derived state
    finalized; or why there is none (in words)."""
    table = plan.sources[name]
    built = _source_model(table, name, reader, rules, plan, storage_options)
    if isinstance(built, str):
        return built
    model, what = built
    variables = plan_variables(model, table)
    missing = [n for n in wanted if n not in variables]
    if missing:
        return (f"the source's model ({what}) does not describe source {name!r}: {missing[0]!r} is not one of its "
                "variables (or has another shape)")
    _fill(model, variables, table, reader, wanted)
    return KerasSide(model, variables, f"{what}, the source's values read by warmstart, finalize_state run")


def _source_model(table: VariableTable, name: str, reader: Any, rules: VerifyRules, plan: Plan,
                  storage_options) -> tuple[Any, str] | str:
    declared = (rules.source_model or plan.rules.source_structure) if name == MAIN_SOURCE else None
    if declared is not None:
        return _build(declared, storage_options), declared
    config = getattr(reader, "config", None)  # a Keras file's model (a .keras archive's config.json)
    if isinstance(config, dict) and "class_name" in config:
        try:
            return built_from_config(config, table.origin), f"{table.origin} built from its configuration"
        except TargetError as exc:
            return f"source {name!r}: {exc}"
    if table.kind == "tf1-checkpoint":
        return ("no source model: a TF1 checkpoint holds no Keras layers; declare output pairs under verify: "
                "(a tensor of its graph against a layer of the target)")
    return (f"no source structure: source {name!r} ({table.origin}) is a {table.kind} without its model; name it "
            "with source_structure or verify: source_model (a .keras file or a py: builder)")


def _fill(model: Any, variables: dict[str, Any], table: VariableTable, reader: Any, wanted: Iterable[str]) -> None:
    """Assign the source's values of ``wanted`` and let layers derive their state, as Keras' loading does."""
    from ..strategies.tf_common import finalize_derived_state

    for n in wanted:
        variables[n].assign(reader.read(table[n].key))
    finalize_derived_state(model)
