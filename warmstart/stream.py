"""The ``stream`` strategy: checkpoint to checkpoint without building a model or importing TF.

Each selected tensor's bytes are read (only those byte ranges), checked against the source CRC
as they pass, and written under the target's key. Variables the plan keeps at their initial
value are copied from the template checkpoint. Memory is bounded by ``chunk_bytes`` for plain
copies; casts and partitioned variables hold one tensor at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import _crc, dtypes
from ._object_graph import OBJECT_GRAPH_KEY
from .bundle import BundleReader, TensorRecord
from .errors import CorruptCheckpointError, UsageError
from .plan import Plan, PlanEntry
from .writer import BundleWriter

__all__ = ["stream_transfer", "copy_tensor", "StreamStats", "DEFAULT_CHUNK_BYTES"]

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024

Progress = Callable[[int, int, str], None]


@dataclass
class StreamStats:
    bytes_read: int = 0
    absent: tuple[str, ...] = ()


def _chunks(reader: BundleReader, key: str, record: TensorRecord, chunk_bytes: int,
            stats: StreamStats) -> Iterator[bytes]:
    """The stored bytes of an unpartitioned tensor, chunk by chunk, CRC-checked at the end."""
    entry = record.entry
    loc = reader.data_location(entry.shard_id)
    crc, done = 0, 0
    with loc.fs.open(loc.path, "rb", cache_type="none") as f:
        f.seek(entry.offset)
        while done < entry.size:
            chunk = f.read(min(chunk_bytes, entry.size - done))
            if not chunk:
                raise CorruptCheckpointError(
                    f"{loc.url}: tensor {key!r} is truncated ({done} of {entry.size} bytes present)")
            crc = _crc.extend(crc, chunk)
            done += len(chunk)
            stats.bytes_read += len(chunk)
            yield chunk
    if entry.dtype != dtypes.by_name("string").enum and _crc.mask(crc) != entry.crc32c:
        raise CorruptCheckpointError(f"{loc.url}: tensor {key!r} fails its CRC32C check (data corrupted)")


def copy_tensor(reader: BundleReader, key: str, out_key: str, writer: BundleWriter,
                target_slices, chunk_bytes: int, stats: StreamStats) -> None:
    """Copy tensor ``key`` of ``reader`` into ``writer`` as ``out_key``, CRC-checked; written as slices
    when ``target_slices`` (extents) are given. Plain tensors are copied chunk by chunk."""
    record = reader.records[key]
    if not record.slices and not target_slices:
        crc = record.entry.crc32c if record.dtype == "string" else None
        if record.dtype == "string":  # its CRC is not a plain CRC of the bytes: check it whole
            data = reader.read_entry_bytes(key, record.entry)
            stats.bytes_read += len(data)
            writer.add_chunks(out_key, record.dtype, record.shape, [data], crc32c=crc)
        else:
            writer.add_chunks(out_key, record.dtype, record.shape, _chunks(reader, key, record, chunk_bytes, stats))
        return
    value = reader.read(key)
    stats.bytes_read += record.stored_bytes
    _write_value(writer, out_key, value, record.dtype, target_slices)


def _write_value(writer: BundleWriter, key: str, value: np.ndarray, dtype: str, target_slices) -> None:
    if target_slices:
        writer.add_slices(key, value, dtype, target_slices)
    else:
        writer.add_array(key, value, dtype)


def _cast(value: np.ndarray, dtype: str) -> np.ndarray:
    dt = dtypes.by_name(dtype)
    return value.astype(dt.numpy)


def stream_transfer(plan: Plan, source: BundleReader, template: BundleReader | None, writer: BundleWriter,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress: Progress | None = None) -> StreamStats:
    """Write every planned tensor into ``writer``. ``template`` supplies initial values (and a TF2
    object graph); without one (a signature target), kept-initial variables are left out and
    listed in ``StreamStats.absent``. Raises :class:`UsageError` for a failed plan."""
    if not plan.ok:
        raise UsageError("refusing to execute a plan that does not satisfy the rules")
    stats = StreamStats()
    absent: list[str] = []
    total = sum((source.records[e.source_key].stored_bytes if e.action in ("copy", "cast") else 0)
                for e in plan.entries)
    done = 0
    # Read sources in file order: sequential reads, and neighbours for range merging.
    order = sorted(plan.entries, key=lambda e: _read_order(e, source, template))
    for e in order:
        target_slices = _template_slices(template, e)
        if e.action == "copy":
            copy_tensor(source, e.source_key, e.target_key, writer, target_slices, chunk_bytes, stats)
            done += source.records[e.source_key].stored_bytes
        elif e.action == "cast":
            record = source.records[e.source_key]
            value = _cast(source.read(e.source_key), e.dtype)
            stats.bytes_read += record.stored_bytes
            _write_value(writer, e.target_key, value, e.dtype, target_slices)
            done += record.stored_bytes
        elif template is not None:
            copy_tensor(template, e.target_key, e.target_key, writer, target_slices, chunk_bytes, stats)
        else:
            absent.append(e.target)
        if progress is not None:
            progress(done, total, e.target)
    if template is not None and OBJECT_GRAPH_KEY in template.records:
        copy_tensor(template, OBJECT_GRAPH_KEY, OBJECT_GRAPH_KEY, writer, (), chunk_bytes, stats)
    stats.absent = tuple(sorted(absent))
    return stats


def _read_order(e: PlanEntry, source: BundleReader, template: BundleReader | None) -> tuple:
    if e.action in ("copy", "cast"):
        entry = source.records[e.source_key].entry
        return (0, entry.shard_id, entry.offset)
    if template is not None and e.target_key in template.records:
        entry = template.records[e.target_key].entry
        return (1, entry.shard_id, entry.offset)
    return (2, 0, 0)


def _template_slices(template: BundleReader | None, e: PlanEntry):
    """The slice extents of the target variable when the template stores it partitioned."""
    if template is None:
        return ()
    record = template.records.get(e.target_key)
    return tuple(extent for extent, _ in record.slices) if record is not None else ()
