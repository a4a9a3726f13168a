"""Running one transfer into one output: plan (or reopen a plan's inputs), check the output, execute with the
chosen strategy, check that no input changed meanwhile, publish with the manifest.

``transfer`` is :func:`warmstart.transfer`; ``publish_output`` is the flow's upload step (a staged local
output published where it could reach no input of its plan).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, UsageError
from ..formats.bundle import BundleReader
from ..planning import PinnedInput, Plan, Report
from ..formats import CHECKPOINT_NAME, KERAS_WEIGHTS, OUTPUT_LAYOUT
from ..storage import OutputDir, publish_directory, resolve, written_aside
from ..verification import verify_mode
from .inputs import Opened, check_output_for, input_places
from .inputs import verify as verify_inputs
from .manifest import manifest, reader_rows, tensor_checksums
from .planner import open_transfer
from .strategy import Strategy, choose_strategy, requested_strategy, source_kind

if TYPE_CHECKING:
    from ..formats import KerasWeightsReader
    from ..planning import Rules
    from ..strategies import TFResult

__all__ = ["transfer", "publish_output"]


def transfer(
    source: Any,
    target: Any,
    output: str,
    rules: Rules | dict[str, Any] | str | None = None,
    strategy: Strategy = "auto",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk_bytes: int | None = None,
    progress=None,
    plan: Plan | None = None,
    shards: int | None = None,
    dask: Any = None,
    sources: Mapping[str, Any] | None = None,
    copies: Mapping[str, PinnedInput] | None = None,
    verify: bool | str | None = None,
) -> Report:
    """Copy the planned variables of ``source`` into a checkpoint for ``target`` at ``output``.

    Plans first (the rules parsed once, here); a plan that fails raises :class:`PlanError` and writes
    nothing. ``plan``: execute this plan instead, exactly: its pinned inputs are opened (a source directory at
    the checkpoint the plan was made from, not its newest) and :class:`InputChangedError` is raised, before
    anything is written, when one changed; ``source``/``target``/``sources`` must be what it was made for.
    Inputs are checked again before publishing. The output directory receives the checkpoint, then its
    ``checkpoint`` state file and ``warmstart.json`` (last, so no reader sees a partial output).
    ``progress(done_bytes, total_bytes, name)`` is called as tensors are written.

    ``shards``: write that many data files, each by a unit of work (:func:`prepare_sharded`); ``dask``
    (a ``distributed.Client`` or a scheduler address) runs the units on that Dask cluster, else they
    run here one after the other. Stream strategy only; ``progress`` is not called then.

    ``sources``: more sources by name (URLs or opened readers), added to (or replacing) the rules'
    ``sources:``; the rules' ``fill_from:`` says which target variables each one fills. ``copies``: the sources
    (by name) given as local copies of what ``plan`` pinned (a cache), with the pinned input each copies.

    ``verify``: ``True`` (or ``"fail"``) certifies the staged output before it is published (the parity certificate:
    :mod:`warmstart.verification`) and raises :class:`CertificateError`, publishing nothing, when it fails;
    ``"warn"`` publishes it all the same. The certificate is ``Report.certificate`` and the manifest's ``verify``.
    """
    mode = verify_mode(verify)
    if mode != "off" and (shards is not None or dask is not None):
        raise UsageError("verify certifies a transfer in one process: it cannot certify a sharded transfer (shards, "
                         "dask); transfer unsharded, or run warmstart verify on the published output")
    if shards is not None or dask is not None:
        from ..strategies import dask_client
        from .sharded import prepare_sharded, run_sharded

        with dask_client(dask) as client:  # first: a cluster out of reach is refused before the output is touched
            job = prepare_sharded(source, target, output, 1 if shards is None else shards, rules, storage_options,
                                  overwrite, chunk_bytes, plan, strategy, sources)
            return run_sharded(job, client)
    started = time.perf_counter()
    opened = open_transfer(source, target, rules, strategy, storage_options, plan, sources, copies)
    plan = opened.plan
    chosen = choose_strategy(requested_strategy(plan, strategy), plan.target, source_kind(plan))  # what cannot work is said first
    # Checked before any tensor byte is read or anything is created: a refused output leaves no trace, and no
    # spelling of a path (.., symlinks) lets the output reach an input the plan was made from.
    out_loc = check_output_for(plan, output, storage_options, overwrite)
    if not plan.ok:
        raise PlanError(plan.failure_message(), plan)
    out = OutputDir(out_loc.url, OUTPUT_LAYOUT, storage_options, overwrite=overwrite)
    try:
        result = _run(chosen, opened, target, out, storage_options, chunk_bytes, progress)
        certificate = None
        if mode != "off":  # the certificate's modules (NumPy, TensorFlow) only when asked for
            from .certify import certificate_of, check_verdict

            certificate = certificate_of(opened, target, out.loc, storage_options)
            result["verify"] = certificate.to_json()
            check_verdict(certificate, mode)  # a failed certificate publishes nothing
        result["seconds"] = round(time.perf_counter() - started, 3)
        verify_inputs([p for p in plan.pinned() if p.name not in (copies or {})], storage_options)  # none changed
        manifest_url = out.commit(manifest(plan, target, chosen, result),
                                  state_file=plan.target.kind != "keras-weights")
    except BaseException:
        out.abort()
        raise
    return Report(plan=plan, strategy=chosen, output=out.url, checkpoint=out.prefix.url, manifest=manifest_url,
                  keras_weights=result.get("keras_weights"), bytes_read=result["bytes_read"],
                  bytes_written=result["bytes_written"], seconds=time.perf_counter() - started,
                  unchecked=tuple(result.get("unchecked", ())), certificate=certificate)


def _run(chosen: str, opened: Opened, target: Any, out: OutputDir, storage_options, chunk_bytes,
         progress) -> dict[str, Any]:
    from ..strategies import SourceReaders

    plan = opened.plan
    readers = SourceReaders(dict(opened.readers)) if len(opened.readers) > 1 else opened.reader
    if chosen == "stream" and plan.target.kind == "keras-weights":
        return _run_keras_stream(plan, readers, opened.template, out, progress)
    if chosen == "stream":
        return _run_stream(plan, readers, opened.template, out, chunk_bytes, progress)
    # a template checkpoint is built from the checkpoint the plan pinned, not what its directory names now
    built = opened.template.url if isinstance(opened.template, BundleReader) else target
    return _run_tf(chosen, plan, readers, built, out, storage_options, progress)


def publish_output(staging: str, output: str, plan: Plan, storage_options: dict[str, Any] | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """Publish a finished local output of ``plan`` (:func:`publish_directory`): refused, before anything is
    written, where it could reach an input the plan was made from."""
    return publish_directory(staging, output, OUTPUT_LAYOUT, storage_options, overwrite,
                             *input_places(plan, storage_options))


def _run_stream(plan, reader, template, out: OutputDir, chunk_bytes, progress) -> dict[str, Any]:
    from ..formats.bundle import BundleWriter
    from ..strategies import DEFAULT_CHUNK_BYTES, stream_transfer

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
    return {"tensors": tensor_checksums(rows), "absent": list(stats.absent), "unchecked": list(stats.unchecked),
            "bytes_read": stats.bytes_read, "bytes_written": writer.bytes_written}


def _run_keras_stream(plan, reader, template: KerasWeightsReader, out: OutputDir, progress) -> dict[str, Any]:
    """Stream into a Keras weights file: written in place locally, uploaded from a work file otherwise."""
    from ..strategies import stream_into_weights

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
    return {**result, "tensors": tensor_checksums(result["tensors"]), "keras_weights": dest.url}


def _run_tf(strategy, plan, reader, target, out: OutputDir, storage_options, progress) -> dict[str, Any]:
    from ..strategies import restore_or_assign

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
        return {"tensors": tensor_checksums(reader_rows(BundleReader.at_prefix(resolve(result.prefix)))),
                "absent": [], "bytes_read": result.bytes_read, "bytes_written": size, "keras_weights": keras_url}


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
