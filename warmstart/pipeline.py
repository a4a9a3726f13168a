"""The engine's pipeline: plan, execute with a strategy, publish the output with its manifest.

``transfer`` runs it all; the steps are public too, one call each for the Prefect tasks:
``check_output_for`` (validate: the output is usable and overlaps no input, before any tensor is
read), ``choose_strategy``, and ``publish_output`` (upload a staged result). A sharded transfer is
``prepare_sharded`` (plan, output prepared, units), the units run anywhere
(:func:`warmstart.strategies.run_unit_retrying`, here or on Dask), then ``commit_sharded`` (parts
renamed, merged index, state file, manifest) or ``abort_sharded``. The top of the engine:
it imports every wing below it (tables, planning, strategies, formats, storage).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import PlanError, UsageError
from .formats import KerasWeightsReader, open_source
from .formats.bundle import BundleReader
from .formats.keras import is_keras_file
from .planning import (
    MAIN_SOURCE,
    TRANSFERRED,
    Plan,
    Report,
    Rules,
    declared_sources,
    load_rules,
    make_plan,
    source_table_for,
)
from .storage import (
    CHECKPOINT_NAME,
    KERAS_WEIGHTS,
    PART_PREFIX,
    Location,
    OutputDir,
    check_output,
    check_output_location,
    manifest_document,
    publish_directory,
    resolve,
    resolve_checkpoint,
    written_aside,
)
from .tables import VariableTable, signature_for, signature_of, table_from_bundle, table_from_reader, target_kind

if TYPE_CHECKING:
    from .strategies import TFResult, Unit, UnitResult

__all__ = ["transfer", "choose_strategy", "check_output_for", "publish_output", "Strategy", "ShardedJob",
           "prepare_sharded", "commit_sharded", "abort_sharded"]

Strategy = Literal["auto", "stream", "restore", "assign"]
SourceReader = BundleReader | KerasWeightsReader
STRATEGIES = ("auto", "stream", "restore", "assign")
_STREAMABLE = ("tf1-checkpoint", "tf2-checkpoint", "signature", "keras-weights")
# TF reads checkpoints of these by their object graph, which a signature does not hold.
_OBJECT_BASED = ("tf2-checkpoint", "keras", "module")


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


def transfer(
    source: str | SourceReader,
    target: Any,
    output: str,
    rules: Rules | dict[str, Any] | str | None = None,
    strategy: Strategy = "auto",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk_bytes: int | None = None,
    progress=None,
    plan: Plan | None = None,
    provenance: dict[str, Any] | None = None,
    shards: int | None = None,
    dask: Any = None,
    sources: dict[str, str | SourceReader] | None = None,
    sources_provenance: dict[str, dict[str, Any]] | None = None,
) -> Report:
    """Copy the planned variables of ``source`` into a checkpoint for ``target`` at ``output``.

    Plans first; a plan that fails raises :class:`PlanError` and writes nothing. The output
    directory receives the checkpoint, then its ``checkpoint`` state file and ``warmstart.json``
    (last, so no reader sees a partial output). ``progress(done_bytes, total_bytes, name)`` is
    called as tensors are written. ``plan`` may pass a plan already made for these inputs (its
    source keys must exist in ``source``: the stream raises :class:`InputNotFoundError` naming the variable,
    before writing anything, when one does not). ``provenance`` replaces the manifest's ``source`` record
    (when ``source`` is a local cached copy of the real source).

    ``shards``: write that many data files, each by a unit of work (:func:`prepare_sharded`); ``dask``
    (a ``distributed.Client`` or a scheduler address) runs the units on that Dask cluster, else they
    run here one after the other. Stream strategy only; ``progress`` is not called then.

    ``sources``: more sources by name (URLs or opened readers), added to (or replacing) the rules'
    ``sources:``; the rules' ``fill_from:`` says which target variables each one fills, and each is read from its
    own source. ``sources_provenance``: their manifest records by name, as ``provenance`` for ``source``.
    """
    if shards is not None or dask is not None:
        job = prepare_sharded(source, target, output, 1 if shards is None else shards, rules, storage_options,
                              overwrite, chunk_bytes, plan, provenance, strategy, sources)
        return run_sharded(job, dask)
    started = time.perf_counter()
    reader = open_source(source, storage_options)  # its index (HDF5 structure) only, unless already open
    # Checked before any tensor byte is read or anything is created: a refused output leaves no
    # trace, and no spelling of a path (.., symlinks) lets the output reach an input.
    out_loc = check_output_for(reader, target, output, rules, storage_options, overwrite, sources)
    rules_model = load_rules(rules, storage_options)
    named = open_named_sources(rules_model, sources, storage_options)
    plan, template = _planned(plan, reader, target, rules_model, storage_options, strategy, named)
    chosen = choose_strategy(strategy, plan.target, _source_kind(plan))  # what cannot work at all is said first
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    from .strategies import SourceReaders

    readers = SourceReaders({MAIN_SOURCE: reader, **named}) if named else reader
    out = OutputDir(out_loc.url, storage_options, overwrite=overwrite)
    try:
        if chosen == "stream" and plan.target.kind == "keras-weights":
            result = _run_keras_stream(plan, readers, template, target, out, storage_options, progress)
        elif chosen == "stream":
            result = _run_stream(plan, readers, template, target, out, storage_options, chunk_bytes, progress)
        else:
            result = _run_tf(chosen, plan, readers, target, out, storage_options, progress)
        result["seconds"] = round(time.perf_counter() - started, 3)
        records = _source_records(reader, provenance, named, sources_provenance)
        manifest_url = out.commit(_manifest(plan, records, target, rules_model, chosen, result),
                                  state_file=plan.target.kind != "keras-weights")
    except BaseException:
        out.abort()
        raise
    return Report(plan=plan, strategy=chosen, output=out.url, checkpoint=out.prefix.url, manifest=manifest_url,
                  keras_weights=result.get("keras_weights"), bytes_read=result["bytes_read"],
                  bytes_written=result["bytes_written"], seconds=time.perf_counter() - started,
                  unchecked=tuple(result.get("unchecked", ())))


def _planned(plan: Plan | None, reader: SourceReader, target: Any, rules: Rules, storage_options,
             strategy: str, named: dict[str, SourceReader] | None = None,
             ) -> tuple[Plan, BundleReader | KerasWeightsReader | None]:
    """The plan (made here unless given) and a template's reader, opened once for the plan and the copy."""
    template = None
    if plan is None:
        source_table = source_table_for(table_from_reader(reader), rules, storage_options)
        target_table, template = _target(target, storage_options, source_table.kind, strategy)
        plan = make_plan(source_table, target_table, rules, storage_options,
                         sources={name: table_from_reader(r) for name, r in (named or {}).items()})
    return plan, template


def open_named_sources(rules: Rules, sources: dict[str, Any] | None,
                       storage_options: dict[str, Any] | None = None) -> dict[str, SourceReader]:
    """Readers of the named sources (the rules' ``sources:`` and ``sources``, URLs or readers): their
    indexes or structures only."""
    return {name: open_source(value, storage_options) for name, value in declared_sources(rules, sources).items()}


def _source_kind(plan: Plan) -> str:
    """The source kind strategies must serve: ``keras-weights`` if any source is a Keras weights file."""
    kinds = [table.kind for table in plan.sources.values()]
    return "keras-weights" if "keras-weights" in kinds else plan.source.kind


def _source_record(reader: SourceReader, provenance: dict[str, Any] | None) -> dict[str, Any]:
    return provenance or {"url": reader.url, "index": reader.identity()}


def _source_records(reader: SourceReader, provenance: dict[str, Any] | None, named: dict[str, SourceReader],
                    named_provenance: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Every source's manifest record by name: its URL and the identity of its index (its real place and
    version when it was read from a cached copy)."""
    records = {MAIN_SOURCE: _source_record(reader, provenance)}
    for name, r in named.items():
        records[name] = _source_record(r, (named_provenance or {}).get(name))
    return records


def _manifest(plan: Plan, sources: dict[str, dict[str, Any]], target: Any, rules: Rules, strategy: str,
              result: dict[str, Any]) -> dict[str, Any]:
    return {**manifest_document(
        source=sources[MAIN_SOURCE],
        target={"spec": target if isinstance(target, str) else plan.target.origin,
                "origin": plan.target.origin, "kind": plan.target.kind},
        rules=rules.model_dump(mode="json"),
        strategy=strategy,
        plan=plan.to_json(),
        tensors=result["tensors"],
        absent=result["absent"],
        stats={k: result[k] for k in ("bytes_read", "bytes_written", "seconds")},
        unchecked=result.get("unchecked", []),
    ), "sources": sources}


def _tensor_checksums(rows) -> list[dict[str, Any]]:
    """The manifest's ``tensors``: one row per tensor, by key; a partitioned tensor lists a CRC per slice."""
    return [{"key": key, "dtype": dtype, "shape": list(shape), "bytes": size,
             "crc32c_masked": list(crc) if isinstance(crc, tuple) else crc}
            for key, dtype, shape, size, crc in sorted(rows, key=lambda row: row[0])]


def _reader_rows(reader: BundleReader):
    for key, rec in reader.records.items():
        crc = tuple(e.crc32c for _, e in rec.slices) if rec.slices else rec.entry.crc32c
        yield key, rec.dtype, rec.shape, rec.stored_bytes, crc


def check_output_for(source: SourceReader | str, target: Any, output: str | Location, rules: Any = None,
                     storage_options: dict[str, Any] | None = None, overwrite: bool = False,
                     sources: dict[str, Any] | None = None) -> Location:
    """Raise :class:`StorageError` unless a transfer from ``source`` (and the named sources of ``rules`` and
    ``sources``) for ``target`` may publish at ``output``: not an input's place
    (:func:`check_output_location`), empty or ``overwrite``, writable (:func:`check_output`). Reads no
    tensor and creates nothing; returns the output's location."""
    out_loc = output if isinstance(output, Location) else resolve(output, storage_options)
    check_output_location(out_loc, *_inputs(source, target, rules, storage_options))
    if rules is not None or sources:
        named = declared_sources(load_rules(rules, storage_options), sources)
        check_output_location(out_loc, *_named_inputs(named, storage_options))
    check_output(out_loc, overwrite)
    return out_loc


def publish_output(staging: str, output: str, source: str, target: Any, rules: Any = None,
                   storage_options: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Publish a finished local output (:func:`publish_directory`) for a transfer from ``source`` for
    ``target``: refused, before anything is written, where it could reach an input."""
    dirs, files = _inputs(source, target, rules, storage_options)
    named = _named_inputs(declared_sources(load_rules(rules, storage_options)), storage_options)
    return publish_directory(staging, output, storage_options, overwrite, dirs + named[0], files + named[1])


def _inputs(source: SourceReader | str, target: Any, rules: Any,
            storage_options) -> tuple[list[Location], list[Location]]:
    """The directories and files a transfer reads: a source or template checkpoint (its directory and
    files), a Keras source file, a target file, a rules file."""
    dirs, files = _source_inputs(source, storage_options)
    kind = target_kind(os.fspath(target)) if isinstance(target, (str, os.PathLike)) else "live"
    if kind == "checkpoint":
        prefix = resolve_checkpoint(target, storage_options)
        dirs.append(prefix.parent)
        files.append(prefix.with_suffix(".index"))
    elif kind not in ("builder", "live"):
        files.append(resolve(target, storage_options))
    if isinstance(rules, (str, os.PathLike)):
        files.append(resolve(rules, storage_options))
    return dirs, files


def _source_inputs(source: SourceReader | str, storage_options) -> tuple[list[Location], list[Location]]:
    """The directories and files of one source: a checkpoint's directory and files, a Keras file."""
    if isinstance(source, KerasWeightsReader):  # one file: its directory is not the input's
        return [], source.files()
    if isinstance(source, BundleReader):
        return [source.prefix.parent], source.files()
    if is_keras_file(source):
        return [], [resolve(source, storage_options)]
    prefix = resolve_checkpoint(source, storage_options)
    return [prefix.parent], [prefix.with_suffix(".index")]


def _named_inputs(named: dict[str, SourceReader | str],
                  storage_options=None) -> tuple[list[Location], list[Location]]:
    """The directories and files of the named sources (an output may reach none of them)."""
    dirs: list[Location] = []
    files: list[Location] = []
    for source in named.values():
        more = _source_inputs(source, storage_options)
        dirs, files = dirs + more[0], files + more[1]
    return dirs, files


def _target(target: Any, storage_options, source_kind: str,
            strategy: str) -> tuple[VariableTable, BundleReader | KerasWeightsReader | None]:
    """The target's table and, for a template (a checkpoint, a Keras weights file), its opened reader
    (for the stream's initial values: opened once). A ``.keras`` target of a Keras-file source is its
    own weights file unless the model is to be built (``restore``/``assign``)."""
    if hasattr(target, "__fspath__"):
        target = os.fspath(target)
    kind = target_kind(target) if isinstance(target, str) else "live"
    if kind == "checkpoint":
        template = open_source(target, storage_options)  # refused when it lies in an unfinished output
        return table_from_bundle(template), template
    if strategy in ("restore", "assign"):
        return signature_of(target, storage_options), None
    if kind == "keras-weights" or (kind == "keras" and source_kind == "keras-weights"):
        weights = open_source(target, storage_options)
        return table_from_reader(weights), weights
    return signature_for(target, source_kind, storage_options), None


def _run_stream(plan, reader, template, target, out: OutputDir, storage_options, chunk_bytes,
                progress) -> dict[str, Any]:
    from .formats.bundle import BundleWriter
    from .strategies import DEFAULT_CHUNK_BYTES, stream_transfer

    if template is None and plan.target.kind != "signature":
        template = BundleReader(target, storage_options)
    writer = BundleWriter(out.prefix)
    out.record(writer.data_loc)
    out.record(writer.index_loc)
    try:
        stats = stream_transfer(plan, reader, template, writer, chunk_bytes or DEFAULT_CHUNK_BYTES, progress)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    # What the writer recorded is what its index holds (no need to parse that index again).
    rows = ((w.key, w.dtype, w.shape, w.size, w.crc32c) for w in writer.written)
    return {"tensors": _tensor_checksums(rows), "absent": list(stats.absent), "unchecked": list(stats.unchecked),
            "bytes_read": stats.bytes_read, "bytes_written": writer.bytes_written}


def _run_keras_stream(plan, reader, template, target, out: OutputDir, storage_options, progress) -> dict[str, Any]:
    """Stream into a Keras weights file: written in place locally, uploaded from a work file otherwise."""
    from .strategies import stream_into_weights

    if template is None:  # a plan made elsewhere: the target's weights not opened yet
        template = KerasWeightsReader(os.fspath(target), storage_options)
    dest = out.loc.child(KERAS_WEIGHTS)
    with tempfile.TemporaryDirectory(prefix="warmstart-") as workdir:
        # written aside and renamed (locally), or uploaded once complete: never a torn file under its name
        aside = written_aside(out.loc.path, KERAS_WEIGHTS) if out.loc.is_local else \
            contextlib.nullcontext(os.path.join(workdir, KERAS_WEIGHTS))
        with aside as local:
            result = stream_into_weights(plan, reader, template, local, progress)
        if out.loc.is_local:
            out.record(dest)
        else:
            out.put_file(local, KERAS_WEIGHTS)
    return {**result, "tensors": _tensor_checksums(result["tensors"]), "keras_weights": dest.url}


def _run_tf(strategy, plan, reader, target, out: OutputDir, storage_options, progress) -> dict[str, Any]:
    from .strategies import restore_or_assign

    local_out = out.loc.is_local
    with tempfile.TemporaryDirectory(prefix="warmstart-") as workdir:
        # A local output receives TF's save directly (writing to the work directory and copying would
        # read and write the whole model once more); other outputs are uploaded from the work directory.
        save_dir = out.loc.path if local_out else workdir
        try:
            result = restore_or_assign(strategy, plan, target, reader, workdir, progress=progress,
                                        storage_options=storage_options, out_dir=save_dir)
        except BaseException:
            if local_out:
                _remove_tf_output(out)
            raise
        keras_url, size = _collect_tf_output(out, result, save_dir, workdir)
        return {"tensors": _tensor_checksums(_reader_rows(BundleReader(result.prefix))), "absent": [],
                "bytes_read": result.bytes_read, "bytes_written": size, "keras_weights": keras_url}


def _collect_tf_output(out: OutputDir, result: TFResult, save_dir: str, workdir: str) -> tuple[str | None, int]:
    """Record (local output) or upload (object store) what TF saved; returns the Keras weights' URL and
    the data files' size."""
    base = Path(result.prefix).name
    data_files = sorted(p.name for p in Path(save_dir).glob(base + ".data-*"))
    weights = [Path(result.keras_weights).name] if result.keras_weights else []
    if out.loc.is_local:
        for name in [*data_files, base + ".index", *weights]:
            out.record(out.loc.child(name))
        keras_url = out.loc.child(weights[0]).url if weights else None
    else:
        for name in data_files:
            out.put_file(str(Path(workdir) / name), name.replace(base, CHECKPOINT_NAME, 1))
        out.put_file(result.prefix + ".index", CHECKPOINT_NAME + ".index")
        keras_url = out.put_file(result.keras_weights, KERAS_WEIGHTS).url if result.keras_weights else None
    return keras_url, sum((Path(save_dir) / n).stat().st_size for n in data_files)


def _remove_tf_output(out: OutputDir) -> None:
    """After a failed TF save into a local output: remove what TF left (its files and temp directories)."""
    import shutil

    for path in Path(out.loc.path).glob(CHECKPOINT_NAME + "*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    Path(out.loc.path, "model.weights.h5").unlink(missing_ok=True)


@dataclass(frozen=True)
class ShardedJob:
    """A sharded transfer prepared by :func:`prepare_sharded`: its units, and what publishing needs."""

    units: list[Unit]
    output: str
    storage_options: dict[str, Any] | None
    plan: Plan
    source: dict[str, Any]  # the manifest's source record
    target: Any
    rules: dict[str, Any]
    started: float  # time.time() when prepared
    created: str | None = None  # the highest local directory the run created (removed by a rollback)
    absent: tuple[str, ...] = ()  # variables a signature target's output leaves out (kept at their initial value)

    def with_storage_options(self, options: dict[str, Any] | None) -> ShardedJob:
        """This job with ``options`` for itself and every unit (None: a job safe to record, no credentials)."""
        from dataclasses import replace

        return replace(self, storage_options=options, units=[replace(u, storage_options=options) for u in self.units])

    def names(self) -> list[str]:
        """The objects the transfer may write in the output under known names (its parts' names are
        found by listing: :func:`_remove_parts`)."""
        return [n for u in self.units for n in (u.record_name, u.final_name)] + [CHECKPOINT_NAME + ".index"]


def prepare_sharded(source: str, target: Any, output: str, shards: int, rules: Any = None,
                    storage_options: dict[str, Any] | None = None, overwrite: bool = False,
                    chunk_bytes: int | None = None, plan: Plan | None = None,
                    provenance: dict[str, Any] | None = None, strategy: str = "auto",
                    sources: dict[str, Any] | None = None) -> ShardedJob:
    """Plan, check and prepare the output (marked incomplete; parts an interrupted run of the same plan
    staged are kept, others removed), and split the plan into ``shards`` units (:func:`split_units`).
    Raises :class:`PlanError` for a failed plan and :class:`UsageError` where streaming cannot serve
    (several named sources included: a sharded transfer reads one source)."""
    from .strategies import DEFAULT_CHUNK_BYTES, run_prefix, split_units

    if shards < 1:
        raise UsageError(f"shards must be at least 1, not {shards}")
    rules_model = load_rules(rules, storage_options)
    named = declared_sources(rules_model, sources)
    if named:
        raise UsageError(f"sharded transfers (shards, dask) read one source, but {len(named)} more are named "
                         f"({', '.join(repr(n) for n in named)}): transfer without shards, or from one source")
    reader = open_source(source, storage_options)
    out_loc = check_output_for(reader, target, output, rules, storage_options, overwrite)
    plan, template = _planned(plan, reader, target, rules_model, storage_options, strategy)
    if choose_strategy(strategy, plan.target, plan.source.kind) != "stream" or not isinstance(reader, BundleReader) \
            or plan.target.kind == "keras-weights":
        raise UsageError("sharded transfers (shards, dask) stream TF checkpoints into a template checkpoint or "
                         f"signature target; {plan.target.origin} is a {plan.target.kind} target")
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    if template is None and plan.target.kind != "signature":
        template = BundleReader(target, storage_options)
    out = OutputDir(out_loc.url, storage_options, overwrite=overwrite, keep_parts=True)
    try:
        units = split_units(plan, reader, template, out.url, shards, storage_options,
                            chunk_bytes or DEFAULT_CHUNK_BYTES)
        _remove_parts(out, keep=run_prefix(units[0].digest))
    except BaseException:
        out.abort()
        raise
    return ShardedJob(units, out.url, storage_options, plan, _source_record(reader, provenance),
                      target if isinstance(target, str) else plan.target.origin, rules_model.model_dump(mode="json"),
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
    from .strategies import run_units

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
    from .formats.bundle import write_index

    if sorted(r.index for r in results) != [u.index for u in job.units]:
        raise UsageError(f"expected one result per unit (0..{len(job.units) - 1}), got {[r.index for r in results]}")
    out = OutputDir.reopen(job.output, job.storage_options, job.names(), job.created)
    try:
        entries: dict[bytes, Any] = {}
        for unit, done in zip(job.units, sorted(results, key=lambda r: r.index)):
            out.promote(done.part, unit.final_name)
            entries.update(done.index_entries())
        _remove_parts(out)  # the records, and parts of attempts that lost (a worker presumed dead, then not)
        write_index(out.prefix.with_suffix(".index"), entries, len(job.units))
        rows = [row for r in results for row in r.written]
        result = {"tensors": _tensor_checksums(rows), "absent": list(job.absent), "bytes_read": sum(r.bytes_read for r in results),
                  "bytes_written": sum(r.bytes_written for r in results),
                  "seconds": round(time.time() - job.started, 3)}
        manifest_url = out.commit(_manifest(job.plan, {MAIN_SOURCE: job.source}, job.target, load_rules(job.rules),
                                            "stream", result))
    except BaseException:
        _roll_back(out)
        raise
    return Report(plan=job.plan, strategy="stream", output=out.url, checkpoint=out.prefix.url, manifest=manifest_url,
                  bytes_read=result["bytes_read"], bytes_written=result["bytes_written"], seconds=result["seconds"])


def abort_sharded(job: ShardedJob) -> None:
    """Remove everything the transfer wrote in its output (parts, records, marker): best effort."""
    _roll_back(OutputDir.reopen(job.output, job.storage_options, job.names(), job.created))


def _roll_back(out: OutputDir) -> None:
    """Remove the run's parts and records (listed), then what it wrote under known names and its marker."""
    try:
        _remove_parts(out)
    except OSError:
        pass  # best effort: the original error is what matters
    out.abort()
