"""Planning: rules, the plan, and the report. Pure: nothing here reads tensor data or writes output.

``make_plan(source_table, target_table, rules)`` decides what every target variable gets (copy,
cast, init, skip, error) and why; strategies only execute that decision. ``render`` draws tables and
plans for a terminal (rich is imported only there).
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".block_plan": ("Blocks", "BlockSource"),
    ".inputs": ("READ_BY_TRANSFER", "PinnedFile", "PinnedInput"),
    ".matching": ("make_plan", "source_table_for"),
    ".parity": ("Lookup", "OutputPair", "PairInput", "VerifyRules"),
    ".plan": ("COUNTED", "DIRECT", "MAIN_SOURCE", "STRATEGIES", "TRANSFERRED", "Action", "Plan", "PlanEntry", "Strategy"),
    ".report": ("Report",),
    ".plain_rules": ("PlainRules", "ParsedRules"),
    ".rule_checks": ("DEFAULT_EXCLUDE",),
    ".rules": ("Rules",),
    ".rules_files": ("load_rules",),
    ".sources": ("declared_sources",),
})
