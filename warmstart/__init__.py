"""warmstart: copy learned variables from one TensorFlow graph or model into another, checked.

Everything that holds variables becomes a :class:`VariableTable`; :func:`plan` is a pure function
of (source table, target table, rules); strategies execute a plan. Importing this package does
not import TensorFlow or Prefect.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    CorruptCheckpointError,
    InputError,
    InputNotFoundError,
    PlanError,
    StorageError,
    TargetError,
    UsageError,
    WarmStartError,
)
from .plan import Plan, PlanEntry
from .rules import DEFAULT_EXCLUDE, Rules, load_rules
from .table import Variable, VariableTable, read_table
from .targets import signature_of

__version__ = "0.1.0"

__all__ = [
    "read_table",
    "signature_of",
    "plan",
    "Plan",
    "PlanEntry",
    "Rules",
    "DEFAULT_EXCLUDE",
    "load_rules",
    "Variable",
    "VariableTable",
    "WarmStartError",
    "PlanError",
    "UsageError",
    "InputError",
    "InputNotFoundError",
    "CorruptCheckpointError",
    "TargetError",
    "StorageError",
    "__version__",
]


def plan(
    source: Any,
    target: Any,
    rules: Rules | dict[str, Any] | str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Validate ``source`` against ``target`` under ``rules`` and return the :class:`Plan`.

    ``source``: a checkpoint URL/path or a :class:`VariableTable`; ``target``: anything
    :func:`signature_of` accepts. Reads only index files. The plan may fail (``Plan.ok`` is
    False, ``Plan.problems()`` says why); inputs that cannot be read raise :class:`InputError`.
    """
    from .plan import make_plan

    source_table = source if isinstance(source, VariableTable) else read_table(str(source), storage_options)
    target_table = signature_of(target, storage_options)
    return make_plan(source_table, target_table, load_rules(rules, storage_options))
