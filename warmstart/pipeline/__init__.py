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

from .certify import PreferringReader, certify_staged, verify_output
from .inputs import Opened, SourceReader, check_output_for, read_rules, reopen, verify
from .planner import open_transfer, plan_transfer
from .run import publish_output, transfer
from .sharded import ShardedJob, abort_sharded, commit_sharded, prepare_sharded, run_sharded
from .strategy import STRATEGIES, Strategy, choose_strategy

__all__ = ["transfer", "plan_transfer", "open_transfer", "read_rules", "reopen", "verify", "Opened", "SourceReader",
           "choose_strategy", "check_output_for", "publish_output", "Strategy", "STRATEGIES", "ShardedJob",
           "prepare_sharded", "run_sharded", "commit_sharded", "abort_sharded", "verify_output", "certify_staged",
           "PreferringReader"]
