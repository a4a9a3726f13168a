"""Which strategy executes a plan: the strategy names, and what each can serve.

``stream`` writes template checkpoints, signatures' checkpoints and Keras weights files without building
anything; ``restore`` and ``assign`` build the target with TensorFlow (``.meta``, ``.keras``, builders).
"""

from __future__ import annotations

from ..errors import UsageError
from ..planning import STRATEGIES, Plan, Strategy
from ..tables import TableKind, VariableTable

__all__ = ["Strategy", "STRATEGIES", "choose_strategy", "source_kind", "requested_strategy"]

#: Target table kinds a stream writes without building anything (templates and signatures).
_STREAMABLE: tuple[TableKind, ...] = ("tf1-checkpoint", "tf2-checkpoint", "signature", "keras-weights")
# TF reads checkpoints of these by their object graph, which a signature does not hold.
_OBJECT_BASED: tuple[TableKind, ...] = ("tf2-checkpoint", "keras", "module")


def choose_strategy(strategy: str, target_table: VariableTable, source_kind: str = "tf-checkpoint") -> str:
    """``auto`` is ``stream`` for template-checkpoint and signature targets, ``restore`` otherwise
    (``assign`` from a Keras weights file, which TF cannot restore from). Raises :class:`UsageError`
    for a strategy that cannot serve the target or the source."""
    chosen = _for_target(strategy, target_table)
    if source_kind != "keras-weights" or chosen == "assign" or target_table.kind == "keras-weights":
        return chosen
    if strategy == "auto" and chosen == "restore":
        return "assign"
    raise UsageError(
        f"the {chosen} strategy reads TF checkpoints; from a Keras weights file only assign works, into a target "
        "that is built (.keras, .meta, py: builder, live model): give such a target, and --strategy auto or assign"
    )


def requested_strategy(plan: Plan, strategy: str) -> str:
    """The strategy a transfer of ``plan`` asks for: ``strategy``, or the plan's own for ``auto``. A plan's target
    table is made for its strategy (a template's for ``stream``, the built model's for ``restore``/``assign``), so
    another strategy must make the same table. Raises :class:`UsageError` otherwise."""
    if strategy == "auto" or strategy == plan.strategy:
        return plan.strategy
    builds = plan.target.kind not in _STREAMABLE  # the plan's target is the model TF builds: any building strategy
    if builds and strategy in ("restore", "assign") and plan.strategy in ("auto", "restore", "assign"):
        return strategy
    raise UsageError(f"the plan was made for strategy {plan.strategy!r}, not {strategy!r}: plan again with "
                     f"strategy={strategy!r}")


def source_kind(plan: Plan) -> str:
    """The source kind strategies must serve: ``keras-weights`` if any source is a Keras weights file."""
    kinds = [table.kind for table in plan.sources.values()]
    return "keras-weights" if "keras-weights" in kinds else plan.source.kind


def _for_target(strategy: str, target_table: VariableTable) -> str:
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if target_table.kind == "signature" and target_table.describes in _OBJECT_BASED:
        raise UsageError(
            f"{target_table.origin} describes a {target_table.describes} target, whose checkpoints TensorFlow reads "
            "through an object graph that a signature does not hold: tf.train.Checkpoint would restore nothing "
            "from the output. Plan against the signature, but transfer into the target itself (its .keras file "
            "or builder) or into a template checkpoint of it (tf.train.Checkpoint(model=new_model).write(...))"
        )
    if strategy == "auto":
        return "stream" if target_table.kind in _STREAMABLE else "restore"
    if strategy == "stream" and target_table.kind not in _STREAMABLE:
        raise UsageError(
            f"the stream strategy needs a template checkpoint or signature target; {target_table.origin} is a "
            f"{target_table.kind} target: use --strategy restore or assign"
        )
    if strategy in ("restore", "assign") and target_table.kind in ("tf2-checkpoint", "signature", "keras-weights"):
        raise UsageError(
            f"the {strategy} strategy builds the target, but {target_table.origin} is a {target_table.kind} "
            "with nothing to build: use --strategy stream, or give a .keras, .meta or py: builder target"
        )
    return strategy
