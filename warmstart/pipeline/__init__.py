"""The engine's pipeline: plan once, execute that plan with a strategy, publish the output with its manifest.

The top of the engine: it imports every wing below it. By idea: ``planner`` (the one function that makes a
plan, with every input pinned by version), ``inputs`` (opening, pinning and checking inputs; the output's
check), ``strategy`` (which strategy serves a plan), ``run`` (one transfer into one output; publishing a
staged output), ``manifest`` (``warmstart.json``), ``sharded`` (units of work on Dask). The steps are public
for the Prefect tasks: ``plan_transfer`` (validate), ``check_output_for``, ``transfer(plan=...)``,
``publish_output`` (upload), ``prepare_sharded``/``commit_sharded``/``abort_sharded``; ``certify`` (the parity
certificate of a staged output, ``certify_staged`` for the flow's verify step, and of a finished one:
``verify_output``).
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".certify": ("PreferringReader", "certify_staged", "verify_output"),
    ".inputs": ("Opened", "check_output_for", "read_rules", "reopen", "verify"),
    ".planner": ("open_transfer", "plan_transfer"),
    ".run": ("publish_output", "transfer"),
    ".sharded": ("ShardedJob", "abort_sharded", "commit_sharded", "prepare_sharded", "run_sharded"),
    ".strategy": ("STRATEGIES", "Strategy", "choose_strategy"),
})
