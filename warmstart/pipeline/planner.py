"""The one place a plan is made: from (sources, target, rules, strategy), with every input pinned.

``warmstart.plan``, ``warmstart.transfer``, the CLI, the flow's validate task and the cache all call
:func:`plan_transfer`; a transfer then executes the plan it returns (:func:`warmstart.pipeline.reopen`
opens exactly what it pinned), never a plan made again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..formats import open_source
from ..planning import MAIN_SOURCE, PinnedInput, Plan, declared_sources, make_plan, source_table_for
from ..tables import VariableTable, checkpoint_table
from .inputs import Opened, pin_rules_files, pin_source, pin_target, read_rules, reopen, target_for
from .strategy import requested_strategy

if TYPE_CHECKING:
    from ..planning import ParsedRules
    from .inputs import SourceReader

__all__ = ["plan_transfer", "open_transfer"]


def plan_transfer(source: Any, target: Any, rules: ParsedRules, strategy: str = "auto",
                  storage_options: dict[str, Any] | None = None, sources: Mapping[str, Any] | None = None,
                  rules_input: PinnedInput | None = None) -> Opened:
    """Open the inputs (indexes and structures only), plan, and pin what the plan was made from.

    ``source``: a URL, an opened reader or a :class:`VariableTable`; ``sources``: more sources by name
    (the same kinds), added to the rules' ``sources:``; ``target``: anything a transfer takes;
    ``strategy``: what the target's table is made for (``restore``/``assign`` build the model);
    ``rules_input``: the rules file the rules were read from (:func:`read_rules`). The plan may fail
    (``Plan.ok``); unreadable inputs raise :class:`~warmstart.errors.InputError`."""
    given = {MAIN_SOURCE: source, **declared_sources(rules, sources)}
    opened = {name: _opened(value, storage_options) for name, value in given.items()}
    tables = {name: _table(value) for name, value in opened.items()}
    main = source_table_for(tables.pop(MAIN_SOURCE), rules, storage_options)
    target_table, template = target_for(target, storage_options, main.kind, strategy)
    plan = make_plan(main, target_table, rules, storage_options, sources=tables)
    pins = (*(pin_source(name, given[name], value) for name, value in opened.items()),
            pin_target(target, target_table, template, storage_options, strategy),
            *((rules_input,) if rules_input is not None else ()), *pin_rules_files(rules, storage_options))
    readers = {name: value for name, value in opened.items() if not isinstance(value, VariableTable)}
    return Opened(replace(plan, inputs=pins, strategy=strategy), readers, template)


def _opened(value: Any, storage_options) -> SourceReader | VariableTable:
    return value if isinstance(value, VariableTable) else open_source(value, storage_options)


def _table(value: SourceReader | VariableTable) -> VariableTable:
    return value if isinstance(value, VariableTable) else checkpoint_table(value, "source")


def open_transfer(source: Any, target: Any, rules: Any, strategy: str, storage_options: dict[str, Any] | None,
                  plan: Plan | None = None, sources: Mapping[str, Any] | None = None,
                  copies: Mapping[str, PinnedInput] | None = None) -> Opened:
    """What a transfer executes: a plan made now (rules parsed here, once), or ``plan`` with its pinned inputs
    reopened and checked (:func:`reopen`). Raises :class:`UsageError` when ``rules`` or ``strategy`` contradict
    the plan given."""
    if plan is None:
        rules_model, rules_input = read_rules(rules, storage_options)
        return plan_transfer(source, target, rules_model, strategy, storage_options, sources, rules_input)
    if rules is not None and read_rules(rules, storage_options)[0] != plan.rules:
        raise UsageError("the rules given are not the rules the plan was made with: pass the plan alone, or plan "
                         "again with these rules")
    requested_strategy(plan, strategy)  # one the plan's target table serves
    return reopen(plan, source, target, storage_options, sources, copies)
