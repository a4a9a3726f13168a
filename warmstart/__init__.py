"""warmstart: copy learned variables from one TensorFlow graph or model into another, checked.

Everything that holds variables becomes a :class:`VariableTable`; :func:`plan` is a pure function
of (source table, target table, rules); strategies execute a plan. Importing this package imports
neither TensorFlow nor Prefect, and its names are imported from their modules when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_exports
from ._version import __version__
from .errors import (
    CertificateError,
    CorruptCheckpointError,
    InputChangedError,
    InputError,
    InputLimitError,
    InputNotFoundError,
    OutputBusyError,
    PlanError,
    StorageError,
    TargetError,
    UnsupportedFormatError,
    UsageError,
    WarmStartError,
)

if TYPE_CHECKING:  # imported when first used (the lazy exports below): NumPy, pydantic and fsspec cost a cold process
    from .planning import DEFAULT_EXCLUDE, PlainRules, Plan, PlanEntry, Report, Rules, load_rules
    from .tables import Variable, VariableTable, read_table, signature_of

_LAZY, __getattr__, __dir__ = lazy_exports(__name__, {
    ".planning": ("Report", "Plan", "PlanEntry", "Rules", "PlainRules", "DEFAULT_EXCLUDE", "load_rules"),
    ".tables": ("Variable", "VariableTable", "read_table", "signature_of"),
})
__all__ = [
    "read_table",
    "signature_of",
    "plan",
    "transfer",
    "verify",
    "copy_variables",
    "copy_weights",
    "Report",
    "Plan",
    "PlanEntry",
    "Rules",
    "PlainRules",
    "DEFAULT_EXCLUDE",
    "load_rules",
    "Variable",
    "VariableTable",
    "WarmStartError", "PlanError", "UsageError", "InputError", "InputNotFoundError", "CorruptCheckpointError",
    "TargetError", "StorageError", "UnsupportedFormatError", "InputChangedError", "InputLimitError", "OutputBusyError",
    "CertificateError",
    "__version__",
]


def plan(
    source: Any,
    target: Any,
    rules: Rules | dict[str, Any] | str | None = None,
    storage_options: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
    strategy: str = "auto",
    allow_code: bool = False,
) -> Plan:
    """Validate ``source`` against ``target`` under ``rules`` and return the :class:`Plan`.

    ``source``: a checkpoint or Keras file URL/path, or a :class:`VariableTable`; ``target``: anything
    :func:`signature_of` accepts. ``sources``: more sources by name (URLs or tables), added to (or
    replacing) the rules' ``sources:``; the rules' ``fill_from:`` says which target variables each fills.
    ``strategy``: the one the plan is for (``restore``/``assign`` plan against the built model).
    Reads only index files. The plan records every input it was made from, pinned by version
    (``Plan.inputs``, ``Plan.digest``): ``transfer(..., plan=p)`` copies exactly those, or refuses.
    The plan may fail (``Plan.ok`` is False, ``Plan.problems()`` says why); inputs that cannot be read
    raise :class:`InputError`. A ``py:`` builder in the rules raises :class:`UsageError` unless
    ``allow_code`` (``target`` may be one: the caller gave it).
    """
    from .pipeline import plan_transfer, read_rules
    from .tables import allowing_code

    with allowing_code(allow_code, typed=[target]):
        rules_model, rules_input = read_rules(rules, storage_options)
        return plan_transfer(source, target, rules_model, strategy, storage_options, sources, rules_input).plan


def transfer(source: Any, target: Any, output: str, rules: Rules | dict[str, Any] | str | None = None,
             strategy: str = "auto", storage_options: dict[str, Any] | None = None, allow_code: bool = False,
             **kwargs: Any) -> Report:
    """Plan, then write a checkpoint for ``target`` at the ``output`` directory URL; see
    :func:`warmstart.pipeline.transfer` for the keyword arguments (overwrite, chunk_bytes, progress, shards, dask,
    sources: more named sources, as for :func:`plan`; plan: execute a plan made before, exactly; ``allow_code``
    as for :func:`plan`; verify: ``True``/``"fail"`` or ``"warn"``, the parity certificate of the output before it is
    published: ``Report.certificate``). Raises :class:`PlanError` (nothing written) when the plan does not satisfy
    the rules, :class:`InputChangedError` (nothing written) when an input of the given plan changed, and
    :class:`CertificateError` (nothing published) when ``verify=True`` and the certificate fails."""
    from .pipeline import transfer as _transfer
    from .tables import allowing_code

    with allowing_code(allow_code, typed=[target]):
        return _transfer(source, target, output, rules=rules, strategy=strategy,  # type: ignore[arg-type]
                         storage_options=storage_options, **kwargs)


def verify(source: Any, target: Any, output: str, rules: Rules | dict[str, Any] | str | None = None,
           storage_options: dict[str, Any] | None = None, sources: dict[str, Any] | None = None,
           probes: int | None = None, seed: int | None = None, allow_code: bool = False) -> Any:
    """The parity certificate of a finished ``output`` (a directory, a Keras weights file or a checkpoint prefix,
    written by warmstart or another tool) as a transfer of ``source`` into ``target`` under ``rules``: a
    :class:`warmstart.verification.Certificate` (``.passed``, ``.verdict``, ``.summary()``, ``.to_json()``). It
    does not raise when the certificate fails; :class:`PlanError` when the plan itself fails, :class:`UsageError`
    for a ``verify:`` declaration that cannot run. ``probes``/``seed``: instead of the rules' ``verify:`` values."""
    from .pipeline import verify_output
    from .tables import allowing_code

    with allowing_code(allow_code, typed=[target]):
        return verify_output(source, target, output, rules, storage_options, sources, probes, seed)


def copy_variables(src_session: Any, dst_session: Any, rules: Rules | dict[str, Any] | str | None = None) -> Report:
    """TF1: copy variables between two live graphs, each through its own session, by the plan."""
    from .strategies import copy_variables as _copy

    return _copy(src_session, dst_session, rules)


def copy_weights(src_model: Any, dst_model: Any, rules: Rules | dict[str, Any] | str | None = None) -> Report:
    """TF2/Keras: copy weights between two live models, matched by variable path, not position."""
    from .strategies import copy_weights as _copy

    return _copy(src_model, dst_model, rules)
