"""Validate task: plan the transfer against the cached source index; fail unless it satisfies the rules."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CheckpointCache
from warmstart.planning import ParsedRules, PinnedInput, Plan
from warmstart.errors import PlanError
from warmstart.pipeline import check_output_for
from warmstart.planning.report import positional_words

from ._common import METADATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["validate", "FORM_HINT", "plan_rows"]

# What a person reads first comes first (a 1440 px screen shows target, action, source, shape and dtype; the
# reason, often long, is last): the columns of the plan table artifact.
_COLUMNS = ("target", "action", "source", "shape", "dtype", "reason")
# where a person in the Prefect UI finds every problem and what to change
FORM_HINT = ("the warm-start-plan artifact lists all, errors first; change the 'rules' or 'rules_url' field, or "
             "start a dry run to see the plan")


@task(name="validate", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=METADATA_TIMEOUT)
def validate(index: CachedIndex, target: str, rules: ParsedRules, credentials_block: CredentialsRef = None,
             dry_run: bool = False, cache_dir: str | None = None, output: str | None = None, overwrite: bool = False,
             sources: dict[str, CachedIndex] | None = None, strategy: str = "auto",
             rules_input: PinnedInput | None = None) -> Plan:
    """The plan, with every input pinned by version (``sources``: the named sources' cached indexes, by name),
    also published as a table artifact: what the transfer task executes, exactly. Raises :class:`PlanError` when
    the plan fails, unless ``dry_run`` (then the failed plan is returned for the report), and
    :class:`StorageError` when ``output`` cannot take the result (not empty, not writable, an input's place),
    before any tensor is fetched."""
    started = time.perf_counter()
    options = storage_options_from_block(credentials_block)
    plan = CheckpointCache(cache_dir).plan(index, target, rules, options, sources, strategy, rules_input)
    if output is not None and not dry_run:
        check_output_for(plan, output, options, overwrite)
    doc = plan.to_json()
    create_table_artifact(key="warm-start-plan", table=plan_rows(doc),
                          description=f"Warm-start plan ({doc['status']}, digest {plan.digest}): "
                                      f"{plan.summary()}")
    log_stage(started, "plan %s (digest %s): %s", doc["status"], plan.digest[:12], plan.summary())
    warning = positional_words(doc)
    if warning:
        get_run_logger().warning("%s", warning)
    if not plan.ok and not dry_run:
        raise PlanError(plan.failure_message(FORM_HINT), plan)
    return plan


def plan_rows(doc: dict[str, Any], verified: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The plan table as a person reads it: errors first, then what was decided and why; the source's
    unused variables last (action "unused"). With several sources, a "from" column names the source of
    each row, and the unused variables of every source are listed. ``verified``: what the certificate says of
    each target variable (a "verified" column after the action)."""
    several = len(doc.get("sources", {})) > 1
    columns = _COLUMNS[:2] + ("from",) + _COLUMNS[2:] if several else _COLUMNS
    if verified is not None:
        columns = columns[:2] + ("verified",) + columns[2:]
        doc = {**doc, "variables": [{**row, "verified": verified.get(row["target"], "")} for row in doc["variables"]]}
    order = {"error": 0, "skip": 1, "init": 2, "cast": 3, "copy": 4}
    rows = [{k: row.get(k) for k in columns} for row in sorted(doc["variables"],
                                                                  key=lambda r: order.get(r["action"], 5))]
    unused_by_source = ({name: s["unused"] for name, s in doc["sources"].items()} if several
                        else {None: doc["unused_source"]})
    unused = [{k: {"action": "unused", "reason": "in the source, filling no target variable", "source": name,
                   "from": source}.get(k) for k in columns}
              for source, names in unused_by_source.items() for name in names]
    return rows + unused
