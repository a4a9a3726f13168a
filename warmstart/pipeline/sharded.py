"""Sharded transfers: a plan's output cut into units of work (one data file each), run anywhere, published once.

``prepare_sharded`` (plan or reopen, output checked and marked, units) -> the units run here or on Dask
(:func:`warmstart.strategies.run_unit_retrying`) -> ``commit_sharded`` (parts renamed, merged index, state
file, manifest) or ``abort_sharded``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, UsageError
from ..formats.bundle import BundleReader
from ..planning import TRANSFERRED, Plan, Report
from ..formats import CHECKPOINT_NAME, OUTPUT_LAYOUT
from ..storage import PART_PREFIX, OutputDir
from .inputs import check_output_for, verify
from .manifest import manifest, tensor_checksums
from .planner import open_transfer
from .strategy import choose_strategy, requested_strategy

if TYPE_CHECKING:
    from ..strategies import Unit, UnitResult

__all__ = ["ShardedJob", "prepare_sharded", "run_sharded", "commit_sharded", "abort_sharded"]
@dataclass(frozen=True)
class ShardedJob:
    """A sharded transfer prepared by :func:`prepare_sharded`: its units, and what publishing needs."""

    units: list[Unit]
    output: str
    storage_options: dict[str, Any] | None
    plan: Plan  # with its pinned inputs: the manifest names them, and they are checked before publishing
    target: Any
    started: float  # time.time() when prepared
    created: str | None = None  # the highest local directory the run created (removed by a rollback)
    absent: tuple[str, ...] = ()  # variables a signature target's output leaves out (kept at their initial value)

    def with_storage_options(self, options: dict[str, Any] | None) -> ShardedJob:
        """This job with ``options`` for itself and every unit (None: a job safe to record, no credentials)."""
        return replace(self, storage_options=options, units=[replace(u, storage_options=options) for u in self.units])

    def names(self) -> list[str]:
        """The objects the transfer may write in the output under known names (its parts' names are
        found by listing: :func:`_remove_parts`)."""
        return [n for u in self.units for n in (u.record_name, u.final_name)] + [CHECKPOINT_NAME + ".index"]


def prepare_sharded(source: Any, target: Any, output: str, shards: int, rules: Any = None,
                    storage_options: dict[str, Any] | None = None, overwrite: bool = False,
                    chunk_bytes: int | None = None, plan: Plan | None = None, strategy: str = "auto",
                    sources: dict[str, Any] | None = None) -> ShardedJob:
    """Plan (or reopen ``plan``'s inputs), check and prepare the output (marked incomplete; parts an
    interrupted run of the same plan staged are kept, others removed), and split the plan into ``shards``
    units (:func:`split_units`). Raises :class:`PlanError` for a failed plan and :class:`UsageError` where
    streaming cannot serve (several named sources included: a sharded transfer reads one source)."""
    from ..strategies import DEFAULT_CHUNK_BYTES, run_prefix, split_units

    if shards < 1:
        raise UsageError(f"shards must be at least 1, not {shards}")
    opened = open_transfer(source, target, rules, strategy, storage_options, plan, sources)
    plan, reader, template = opened.plan, opened.reader, opened.template
    if len(opened.readers) > 1:
        named = [n for n in opened.readers if n != "main"]
        raise UsageError(f"sharded transfers (shards, dask) read one source, but {len(named)} more are named "
                         f"({', '.join(repr(n) for n in named)}): transfer without shards, or from one source")
    if choose_strategy(requested_strategy(plan, strategy), plan.target, plan.source.kind) != "stream" \
            or not isinstance(reader, BundleReader) or plan.target.kind == "keras-weights":
        raise UsageError("sharded transfers (shards, dask) stream TF checkpoints into a template checkpoint or "
                         f"signature target; {plan.target.origin} is a {plan.target.kind} target")
    out_loc = check_output_for(plan, output, storage_options, overwrite)
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    # split first: a plan no unit can write is refused before a previous output is withdrawn (overwrite)
    units = split_units(plan, reader, template, out_loc.url, shards, storage_options,
                        chunk_bytes or DEFAULT_CHUNK_BYTES)
    out = OutputDir(out_loc.url, OUTPUT_LAYOUT, storage_options, overwrite=overwrite, keep_parts=True)
    try:
        _remove_parts(out, keep=run_prefix(units[0].digest))
    except BaseException:
        out.abort()
        raise
    return ShardedJob(units, out.url, storage_options, plan, target if isinstance(target, str) else plan.target.origin,
                      time.time(), out.created, _absent(plan, template))


def _absent(plan: Plan, template: BundleReader | None) -> tuple[str, ...]:
    """Without a template, the variables kept at their initial value are not in the output (as in the stream)."""
    if template is not None:
        return ()
    return tuple(sorted(e.target for e in plan.entries if e.action not in TRANSFERRED))


def _remove_parts(out: OutputDir, keep: str | None = None) -> None:
    """Remove the staged parts and records in the output, but those whose names begin with ``keep``."""
    out.loc.fs.invalidate_cache(out.loc.path)  # units in other processes wrote there since any listing here
    for path in out.loc.fs.ls(out.loc.path, detail=False) if out.loc.fs.isdir(out.loc.path) else []:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(PART_PREFIX) and not (keep and name.startswith(keep)):
            out.loc.fs.rm(path)


def run_sharded(job: ShardedJob, dask: Any = None) -> Report:
    """Run the units of ``job`` (here, or on Dask: :func:`run_units`) and publish; a failure removes
    what the run wrote (every unit has stopped by then)."""
    from ..strategies import run_units

    try:
        results = run_units(job.units, dask)
    except BaseException:
        abort_sharded(job)
        raise
    return commit_sharded(job, results)


def commit_sharded(job: ShardedJob, results: list[UnitResult]) -> Report:
    """Publish the parts the units staged: renamed to their data file names, then the merged index, the
    state file and the manifest (:meth:`OutputDir.commit`). Raises :class:`UsageError` for results
    that are not one per unit."""
    from ..formats.bundle import write_index

    if sorted(r.index for r in results) != [u.index for u in job.units]:
        raise UsageError(f"expected one result per unit (0..{len(job.units) - 1}), got {[r.index for r in results]}")
    out = OutputDir.reopen(job.output, OUTPUT_LAYOUT, job.storage_options, job.names(), job.created)
    try:
        entries: dict[bytes, Any] = {}
        for unit, done in zip(job.units, sorted(results, key=lambda r: r.index)):
            out.promote(done.part, unit.final_name)
            entries.update(done.index_entries())
        _remove_parts(out)  # the records, and parts of attempts that lost (a worker presumed dead, then not)
        write_index(out.prefix.with_suffix(".index"), entries, len(job.units))
        rows = [row for r in results for row in r.written]
        result = {"tensors": tensor_checksums(rows), "absent": list(job.absent), "bytes_read": sum(r.bytes_read for r in results),
                  "bytes_written": sum(r.bytes_written for r in results),
                  "seconds": round(time.time() - job.started, 3)}
        verify(job.plan.pinned(), job.storage_options)  # no input changed while the units ran
        manifest_url = out.commit(manifest(job.plan, job.target, "stream", result))
    except BaseException:
        _roll_back(out)
        raise
    return Report(plan=job.plan, strategy="stream", output=out.url, checkpoint=out.prefix.url, manifest=manifest_url,
                  bytes_read=result["bytes_read"], bytes_written=result["bytes_written"], seconds=result["seconds"])


def abort_sharded(job: ShardedJob) -> None:
    """Remove everything the transfer wrote in its output (parts, records, marker): best effort."""
    _roll_back(OutputDir.reopen(job.output, OUTPUT_LAYOUT, job.storage_options, job.names(), job.created))


def _roll_back(out: OutputDir) -> None:
    """Remove the run's parts and records (listed), then what it wrote under known names and its marker."""
    try:
        _remove_parts(out)
    except OSError:
        pass  # best effort: the original error is what matters
    out.abort()
