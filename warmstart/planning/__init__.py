"""Planning: rules, the plan, and the report. Pure: nothing here reads tensor data or writes output.

``make_plan(source_table, target_table, rules)`` decides what every target variable gets (copy,
cast, init, skip, error) and why; strategies only execute that decision. ``render`` draws tables and
plans for a terminal (rich is imported only there).
"""

from .blocks import Blocks, BlockSource
from .inputs import READ_BY_TRANSFER, PinnedFile, PinnedInput
from .matching import make_plan, source_table_for
from .parity import Lookup, OutputPair, PairInput, VerifyRules
from .plan import COUNTED, DIRECT, STRATEGIES, TRANSFERRED, Action, Plan, PlanEntry, Strategy
from .report import Report
from .rules import DEFAULT_EXCLUDE, MAIN_SOURCE, Rules, load_rules
from .sources import declared_sources

__all__ = ["Rules", "DEFAULT_EXCLUDE", "MAIN_SOURCE", "declared_sources", "load_rules", "Plan", "PlanEntry", "Action",
           "make_plan", "source_table_for", "TRANSFERRED", "DIRECT", "COUNTED", "Strategy", "STRATEGIES", "Report", "Blocks", "BlockSource",
           "PinnedInput", "PinnedFile", "READ_BY_TRANSFER", "VerifyRules", "OutputPair", "PairInput", "Lookup"]
