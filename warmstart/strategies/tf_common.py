"""The shared core of the TensorFlow strategies: batches, progress, casts, TF error translation, local
source copies, and the check that a built target is the planned one.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._quiet import quiet_import
from .. import storage
from ..errors import CorruptCheckpointError, InputError, InputNotFoundError, TargetError, UsageError
from ..formats import dtypes
from ..formats.bundle import BundleReader, BundleWriter
from ..planning import Plan, PlanEntry
from ..tables import VariableTable, stateful_layers
from .sources import SourceReaders
from .stream import write_subset

__all__ = ["BATCH_BYTES", "Progress", "TFResult", "UninitializedVariableError", "ProgressTracker", "batches", "target_value", "cast_value", "local_source_prefix", "check_built", "local_checkpoint_copy", "by_source", "source_sizes", "tf_call", "overlaps", "value_nbytes"]


#: Upper bound of the stored bytes read, restored or fed per batch (one larger tensor is one batch).
BATCH_BYTES = 64 * 1024 * 1024


Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TFResult:
    """What :func:`restore_or_assign` wrote: the local checkpoint ``prefix`` (``<prefix>.index`` and
    ``<prefix>.data-00000-of-00001``), ``model.weights.h5`` for Keras targets, and the stored
    bytes of the source tensors it read."""

    prefix: str
    keras_weights: str | None
    bytes_read: int


class UninitializedVariableError(InputError, ValueError):
    """A live graph's variable has no value (its initializer never ran, no checkpoint restored it)."""


class ProgressTracker:
    """Cumulative progress over the transferred entries, by the source's stored bytes."""

    def __init__(self, plan: Plan, source_sizes: Callable[[PlanEntry], int], callback: Progress | None):
        self.size = source_sizes
        self.total = sum(source_sizes(e) for e in plan.transferred)
        self.done = 0
        self.callback = callback

    def advance(self, entry: PlanEntry) -> None:
        self.done += self.size(entry)
        if self.callback is not None:
            self.callback(self.done, self.total, entry.target)


def batches(items: Sequence[Any], size: Callable[[Any], int], limit: int = BATCH_BYTES) -> Iterator[list[Any]]:
    """Consecutive groups of ``items`` whose sizes add up to at most ``limit`` (a larger item alone)."""
    batch: list[Any] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and total + n > limit:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def target_value(sources: SourceReaders, entry: PlanEntry) -> np.ndarray:
    """The value ``entry`` puts into its target: its source's tensor, cast to the target dtype for ``cast``."""
    return cast_value(sources.read(entry), entry)


def cast_value(value: np.ndarray, entry: PlanEntry) -> np.ndarray:
    if entry.action != "cast":
        return value
    target = dtypes.by_name(entry.dtype)
    if target.numpy is None:
        raise UsageError(f"target {entry.target!r}: cannot cast to {entry.dtype}")
    return np.asarray(value).astype(target.numpy)


def local_source_prefix(source: BundleReader, keys: Iterable[str], workdir: str, name: str = "main") -> str:
    """A local prefix TensorFlow can open for ``keys`` of ``source`` (named ``name``): its own, or a partial
    local copy (one directory per source)."""
    if source.prefix.is_local:
        return source.prefix.path
    return local_checkpoint_copy(source, os.path.join(workdir, "source" if name == "main" else f"source-{name}"),
                                 keys=keys)


def check_built(planned: VariableTable, built: VariableTable, what: str) -> None:
    """Raise :class:`TargetError` when the target just built has other variables than the planned one."""
    problems = [f"{n!r} was planned but is not in it" for n in sorted(set(planned) - set(built))]
    problems += [f"{n!r} is in it but was not planned" for n in sorted(set(built) - set(planned))]
    for name in sorted(set(planned) & set(built)):
        p, b = planned[name], built[name]
        shapes_ok = len(p.shape) == len(b.shape) and all(
            x is None or y is None or x == y for x, y in zip(p.shape, b.shape))
        if p.dtype != b.dtype or not shapes_ok:
            problems.append(f"{name!r} is {b.dtype} {list(b.shape)}, planned as {p.dtype} {list(p.shape)}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TargetError(
            f"{what} does not match the planned target {planned.origin}: {problems[0]}{more}. "
            "Plan again against this target (a builder must return the same model every time)"
        )


def local_checkpoint_copy(reader: BundleReader, dest_dir: str, keys: Iterable[str] | None = None) -> str:
    """A local copy of ``keys`` (default: every tensor) of the checkpoint ``reader`` reads, which
    TensorFlow can open (TF 2.21 cannot read ``s3://`` or ``gs://`` itself); returns its prefix.

    Only those tensors' byte ranges are read (merged, bounded, CRC-checked: see
    :func:`warmstart.strategies.write_subset`). Raises :class:`InputNotFoundError` for an unknown key,
    :class:`StorageError` when reading or writing fails.
    """
    os.makedirs(dest_dir, exist_ok=True)
    prefix = os.path.join(dest_dir, posixpath.basename(reader.prefix.path))
    writer = BundleWriter(storage.resolve(prefix))
    try:
        write_subset(reader, sorted(reader.records if keys is None else set(keys)), writer)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return prefix


def by_source(entries: Iterable[PlanEntry]) -> dict[str, list[PlanEntry]]:
    """``entries`` grouped by source key, in order of first use: with ``allow_shared_source`` several
    targets read one key, so anything keyed by source key must hold a list of targets, not one."""
    groups: dict[str, list[PlanEntry]] = {}
    for e in entries:
        groups.setdefault(e.source_key, []).append(e)  # type: ignore[arg-type]
    return groups


def source_sizes(sources: SourceReaders) -> Callable[[PlanEntry], int]:
    return sources.stored_bytes


def tf_call(doing: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a TF call; a TF runtime error becomes a warmstart error saying what was being done:
    corrupt data (a CRC mismatch) a :class:`CorruptCheckpointError`, a missing file or tensor an
    :class:`InputNotFoundError`, anything else a :class:`TargetError`."""
    tf = quiet_import("tensorflow")

    try:
        return fn(*args, **kwargs)
    except tf.errors.OpError as exc:
        message = f"{doing} failed: {type(exc).__name__}: {_tf_error_text(exc.message)}"
        if isinstance(exc, tf.errors.DataLossError):
            raise CorruptCheckpointError(message) from exc
        if isinstance(exc, tf.errors.NotFoundError):
            raise InputNotFoundError(message) from exc
        raise TargetError(message) from exc


def _tf_error_text(message: str) -> str:
    """The cause in a TF runtime error message, without the Python stack TF appends in graph mode
    ("Graph execution error: Detected at node ... defined at (most recent call last): File ...")."""
    kept = []
    for line in message.strip().splitlines():
        text = line.strip()
        if (not text or line[:1].isspace() or text.startswith(("Graph execution error", "Detected at node", "Node:", "[["))
                or text.endswith("(most recent call last):")):
            continue
        kept.append(text)
    return " ".join(kept) or message.strip()


def overlaps(plan: Plan, same_object: bool) -> bool:
    """True when, within one graph/model, a variable is both read and written: then every value is
    read before the first is assigned (one batch), or a later read would see an earlier write."""
    if not same_object:
        return False
    written = {e.target for e in plan.transferred}
    return any(name in written and name != e.target for e in plan.transferred for name in e.sources)


def value_nbytes(value: np.ndarray) -> int:
    if value.dtype == object:
        return sum(len(x) for x in value.flat)
    return int(value.nbytes)


def target_url(target: Any, plan: Plan, accepted: str) -> str:
    """``target`` as a URL string (paths too); raises :class:`UsageError` naming what ``plan`` accepts."""
    if hasattr(target, "__fspath__"):
        target = str(target)
    if not isinstance(target, str):
        raise UsageError(f"a {plan.target.kind} plan needs {accepted}; received a {type(target).__name__}")
    return target


def finalize_derived_state(obj: Any) -> None:
    """After variables of a Keras model were assigned: let layers recompute what they derive from
    them (Normalization's mean and variance), as ``model.load_weights`` does; else the model keeps
    computing with the old values."""
    for layer in stateful_layers(obj):
        layer.finalize_state()
