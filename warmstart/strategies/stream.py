"""The ``stream`` strategy: checkpoint to checkpoint without building a model or importing TF.

Plain tensors (the common case) go through merged range reads (:mod:`warmstart.storage.ranges`):
neighbouring tensors share a request, large tensors are read in chunks, a bounded number of
reads run ahead of the writer, each tensor's CRC is checked on a second thread as its bytes
pass, and casts are applied chunk by chunk. Memory is bounded by about
``(in_flight + 2) * chunk_bytes``. From local files, blocks are mapped rather than read and
unchanged bytes are copied file to file by the kernel (:mod:`warmstart.storage.localio`). String and
partitioned tensors are read whole (one tensor at a time). Variables the plan keeps at their
initial value are copied from the template checkpoint the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CorruptCheckpointError, UsageError
from ..formats import dtypes
from ..formats.bundle import OBJECT_GRAPH_KEY, BundleReader, BundleWriter, TensorRecord, checksums
from ..planning import DIRECT, MAIN_SOURCE, TRANSFERRED, Plan, PlanEntry
from ..storage import Block, fetch_blocks, plan_blocks, read_range
from .sources import SourceReaders

if TYPE_CHECKING:
    import numpy as np

__all__ = ["stream_transfer", "stream_part", "template_keys", "copy_tensor", "copy_tensors", "write_subset", "StreamStats", "DEFAULT_CHUNK_BYTES",
           "DEFAULT_IN_FLIGHT", "DEFAULT_REMOTE_IN_FLIGHT", "MAX_REMOTE_REQUESTS", "DEFAULT_MAX_GAP"]

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024  # ranged reads of 8-16 MiB suit object stores
DEFAULT_IN_FLIGHT = 4  # local sources: blocks are mapped ahead of the copy (bounds what is mapped at once)
# Object stores: each read in flight holds its block twice for a moment (the HTTP client joins the
# body's chunks). 10% of 1 GiB from the moto server, 8 MiB blocks: peak RSS 153 MiB with 4 in flight,
# 129 MiB with 3, 121 MiB with 2, same wall time (74 MiB is the process after importing s3fs).
DEFAULT_REMOTE_IN_FLIGHT = 3
# ... counted in bytes (3 blocks' worth), so that many small blocks may be read at once: each request
# is a round trip, and a sparse selection of small tensors is all requests (measured against fsspec's
# cat_ranges in benchmarks/RANGES.md).
MAX_REMOTE_REQUESTS = 32
DEFAULT_MAX_GAP = 4096  # unselected bytes read to save a request; small, so partial reads stay near 1.0x

Progress = Callable[[int, int, str], None]


@dataclass
class StreamStats:
    bytes_read: int = 0
    requests: int = 0
    absent: tuple[str, ...] = ()
    # tensors read in part (a remap): their whole-tensor CRC not checked. Records as the report and manifest
    # give them: {"checkpoint": "source", "source": name, "key"} or {"checkpoint": "template", "key"}
    unchecked: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Copy:
    """One tensor to move: from ``source_key`` of a reader to ``out_key`` (cast to ``out_dtype``)."""

    source_key: str
    out_key: str
    out_dtype: str
    label: str


def _is_plain(record: TensorRecord) -> bool:
    return not record.slices and record.dtype != "string"


def _aligned(chunk_bytes: int) -> int:
    # Multiples of 64 bytes keep every chunk boundary on an element boundary, for chunked casts.
    return max(64, chunk_bytes - chunk_bytes % 64)


def copy_tensors(reader: BundleReader, copies: list[_Copy], writer: BundleWriter, chunk_bytes: int,
                 stats: StreamStats, in_flight: int | None = None, max_gap: int = DEFAULT_MAX_GAP,
                 on_done: Callable[[_Copy, int], None] | None = None) -> None:
    """Copy plain (unpartitioned, non-string) tensors through merged, bounded, read-ahead range reads.

    From a local checkpoint the blocks are mapped rather than read, and bytes copied unchanged go
    from file to file in the kernel (:mod:`warmstart.storage.localio`); every CRC is checked either way.
    """
    if not copies:
        return
    requests = []
    for i, c in enumerate(copies):
        entry = reader.records[c.source_key].entry
        reader.check_in_files(c.source_key, [entry])  # before any block is planned, mapped or read
        requests.append((i, entry.shard_id, entry.offset, entry.size))
    blocks = plan_blocks(requests, max_block=_aligned(chunk_bytes), max_gap=max_gap)
    if reader.prefix.is_local:
        from ..storage import MappedSource

        # the bytes copied unchanged: allocated in a local output before the kernel copies them
        writer.reserve(sum(reader.records[c.source_key].entry.size for c in copies
                           if c.out_dtype == reader.records[c.source_key].dtype))

        with MappedSource() as mapped:
            _copy_blocks(reader, copies, writer, blocks, stats, (in_flight or DEFAULT_IN_FLIGHT, None), on_done,
                         lambda block: mapped.block(reader.data_location(block.shard), block.start, block.end))
    else:
        budget = (in_flight or DEFAULT_REMOTE_IN_FLIGHT) * _aligned(chunk_bytes)
        _copy_blocks(reader, copies, writer, blocks, stats, (MAX_REMOTE_REQUESTS, budget), on_done,
                     lambda block: _read_block(reader, block))


def _read_block(reader: BundleReader, block: Block) -> bytes:
    loc = reader.data_location(block.shard)
    data = read_range(loc, block.start, block.end)
    if len(data) != block.size:
        raise CorruptCheckpointError(f"{loc.url}: bytes {block.start}..{block.end} are past its end (truncated?)")
    return data


def _copy_blocks(reader, copies, writer, blocks, stats, read_ahead: tuple[int, int | None], on_done, read) -> None:
    """Write the blocks' pieces in order while one thread checks their CRCs, also in order;
    ``read_ahead`` bounds the reads outstanding (count, bytes: :func:`fetch_blocks`).

    Writing (a kernel copy, or a write into the output's buffer) and checking the CRC take about
    0.3 s and 0.1 s per GiB here: done one after the other they add up, on two threads they
    overlap (both release the GIL). A tensor is written with the CRC its index records; its bytes
    are checked at most two blocks later, and a mismatch fails the transfer (so the output is
    discarded) before anything is committed.
    """
    checker = _CrcChecker(reader, copies)
    pending: deque[tuple[Block, Any, Future[None]]] = deque()

    def settle() -> None:
        block, data, checked = pending.popleft()
        checked.result()  # raises CorruptCheckpointError for a tensor whose bytes do not match
        if on_done is not None:
            for piece in block.pieces:
                if piece.last:
                    c = copies[piece.tag]  # type: ignore[index]
                    on_done(c, reader.records[c.source_key].entry.size)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warmstart-crc") as crc_pool:
        try:
            for block, data in fetch_blocks(blocks, lambda block: read(block) if block.size else b"", *read_ahead):
                stats.bytes_read += len(data)
                stats.requests += 1 if block.size else 0
                mapped = not isinstance(data, bytes)
                view = data.view if mapped else memoryview(data)
                pending.append((block, data, crc_pool.submit(checker.check, block, view)))
                _write_pieces(block, data, view, reader, copies, writer)
                if mapped:  # unmapping takes time too: on the checker's thread, after its check
                    crc_pool.submit(_close, data)
                while len(pending) > 1:
                    settle()
            while pending:
                settle()
        finally:
            for _, data, checked in pending:
                checked.cancel()
            crc_pool.shutdown(wait=True)
            for _, data, _ in pending:
                _close(data)


def _write_pieces(block: Block, data, view: memoryview, reader: BundleReader, copies: list[_Copy],
                  writer: BundleWriter) -> None:
    """Write the pieces of one block: a mapped block by kernel copy, a cast converted, others as is."""
    mapped = not isinstance(data, bytes)
    for piece in block.pieces:
        c = copies[piece.tag]  # type: ignore[index]
        record = reader.records[c.source_key]
        same = c.out_dtype == record.dtype
        if piece.first:
            # An unchanged copy is written with the source's CRC (checked by the checker);
            # a cast's CRC is computed by the writer over the cast bytes.
            writer.begin(c.out_key, c.out_dtype, record.shape, crc32c=record.entry.crc32c if same else None)
        with view[piece.start : piece.start + piece.size] as chunk:
            if not same:
                writer.write(_cast_bytes(chunk, record.dtype, c.out_dtype))
            elif mapped:
                writer.copy_from(data.fd, block.start + piece.start, piece.size, chunk)
            else:
                writer.write(chunk)
        if piece.last:
            writer.end()


class _CrcChecker:
    """Checks the CRC32C of tensors block by block; blocks must come in order (one thread)."""

    def __init__(self, reader: BundleReader, copies: list[_Copy]):
        self.reader = reader
        self.copies = copies
        self.crc = 0

    def check(self, block: Block, view: memoryview) -> None:
        for piece in block.pieces:
            if piece.first:
                self.crc = 0
            with view[piece.start : piece.start + piece.size] as chunk:
                self.crc = checksums.extend(self.crc, chunk)
            if piece.last:
                c = self.copies[piece.tag]  # type: ignore[index]
                entry = self.reader.records[c.source_key].entry
                if checksums.mask(self.crc) != entry.crc32c:
                    loc = self.reader.data_location(entry.shard_id)
                    raise CorruptCheckpointError(
                        f"{loc.url}: tensor {c.source_key!r} fails its CRC32C check (data corrupted)")


def _close(data) -> None:
    if not isinstance(data, bytes):
        data.close()


def _cast_bytes(chunk: memoryview, src: str, dst: str) -> bytes:
    import numpy as np

    src_np = dtypes.by_name(src).numpy.newbyteorder("<")  # type: ignore[union-attr]
    dst_np = dtypes.by_name(dst).numpy.newbyteorder("<")  # type: ignore[union-attr]
    return np.frombuffer(chunk, dtype=src_np).astype(dst_np).tobytes()


def copy_tensor(reader: BundleReader, key: str, out_key: str, writer: BundleWriter,
                target_slices, chunk_bytes: int, stats: StreamStats) -> None:
    """Copy one tensor of any kind (strings and partitioned ones too), CRC-checked; written as
    slices when ``target_slices`` (extents) are given."""
    record = reader.records[key]
    if _is_plain(record) and not target_slices:
        copy_tensors(reader, [_Copy(key, out_key, record.dtype, out_key)], writer, chunk_bytes, stats, in_flight=1)
    elif record.dtype == "string" and not record.slices and not target_slices:
        data = reader.read_entry_bytes(key, record.entry)  # its CRC is not a plain CRC: checked whole
        stats.bytes_read += len(data)
        stats.requests += 1
        writer.add_chunks(out_key, record.dtype, record.shape, [data], crc32c=record.entry.crc32c)
    else:
        _write_value(writer, out_key, reader.read(key), record.dtype, target_slices)
        stats.bytes_read += record.stored_bytes
        stats.requests += max(1, len(record.slices))


def write_subset(reader: BundleReader, keys: list[str], writer: BundleWriter,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, in_flight: int | None = None) -> StreamStats:
    """Copy tensors ``keys`` of ``reader`` under their own keys (partitioned ones as slices): the
    content of a sparse copy of the checkpoint. Raises :class:`InputNotFoundError` for an unknown key."""
    from ..errors import InputNotFoundError

    missing = [k for k in keys if k not in reader.records]
    if missing:
        raise InputNotFoundError(f"{reader.url} has no tensor {missing[0]!r} ({len(missing)} missing)")
    stats = StreamStats()
    plain = [k for k in keys if _is_plain(reader.records[k])]
    copy_tensors(reader, [_Copy(k, k, reader.records[k].dtype, k) for k in plain], writer, chunk_bytes, stats,
                 in_flight)
    plain_set = set(plain)  # membership in the list would be quadratic in the number of tensors
    for k in keys:
        if k not in plain_set:
            copy_tensor(reader, k, k, writer, tuple(e for e, _ in reader.records[k].slices), chunk_bytes, stats)
    return stats


def _write_value(writer: BundleWriter, key: str, value: np.ndarray, dtype: str, target_slices) -> None:
    if target_slices:
        writer.add_slices(key, value, dtype, target_slices)
    else:
        writer.add_array(key, value, dtype)


def stream_transfer(plan: Plan, source: BundleReader | SourceReaders, template: BundleReader | None,
                    writer: BundleWriter, chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress: Progress | None = None,
                    in_flight: int | None = None) -> StreamStats:
    """Write every planned tensor into ``writer``, each read from its own source (``source``: the one
    reader of a plan of one source, or the readers by name). ``template`` supplies initial values (and a
    TF2 object graph); without one (a signature target), kept-initial variables are left out and
    listed in ``StreamStats.absent``. Raises :class:`UsageError` for a failed plan and :class:`InputNotFoundError`
    (before writing anything) when a tensor the plan reads is not in its source (a plan made for other inputs)."""
    if not plan.ok:
        raise UsageError("refusing to execute a plan that does not satisfy the rules")
    from .remap import check_readable

    readers = SourceReaders.of(source, plan)
    moved = [e for e in plan.entries if e.action in DIRECT]
    for e in [*moved, *(e for e in plan.entries if e.action == "remap")]:  # before anything is written
        check_readable(e, readers.reader_for(e), template)
    stats = _stream_sources(readers, moved, template_keys(plan, template), template, writer, chunk_bytes, progress,
                            in_flight)
    _remap_all([e for e in plan.entries if e.action == "remap"], readers, template, writer, chunk_bytes, stats,
               in_flight)
    if template is None:
        stats.absent = tuple(sorted(e.target for e in plan.entries if e.action not in TRANSFERRED))
    return stats


def _stream_sources(readers: SourceReaders, moved: list[PlanEntry], kept: list[str], template: BundleReader | None,
                    writer: BundleWriter, chunk_bytes: int, progress: Progress | None,
                    in_flight: int | None) -> StreamStats:
    """The copy/cast entries ``moved``, source after source (each its own merged, CRC-checked reads), and
    the template's ``kept`` tensors; progress counts over all sources."""
    groups = readers.by_source(moved) or {MAIN_SOURCE: []}
    if len(groups) == 1:
        name, group = next(iter(groups.items()))
        return stream_part(group, kept, readers.readers[name], template, writer, chunk_bytes, progress, in_flight)
    stats, total, done = StreamStats(), sum(readers.stored_bytes(e) for e in moved), 0
    for i, (name, group) in enumerate(groups.items()):
        offset = done
        step = None if progress is None else (lambda n, _total, label, offset=offset: progress(offset + n, total, label))
        part = stream_part(group, kept if i == 0 else [], readers.readers[name], template, writer, chunk_bytes, step,
                           in_flight)
        stats.bytes_read, stats.requests = stats.bytes_read + part.bytes_read, stats.requests + part.requests
        done += sum(readers.stored_bytes(e) for e in group)
    return stats


def _remap_all(entries: list[PlanEntry], readers: SourceReaders, template: BundleReader | None, writer: BundleWriter,
               chunk_bytes: int, stats: StreamStats, in_flight: int | None) -> None:
    """The ``remap`` entries, one tensor at a time, reading only the source rows each keeps."""
    from .remap import stream_remap

    for e in entries:
        source = readers.reader_for(e)
        # object stores: many small reads at once (scattered rows are a request each), within a byte budget
        budget = (in_flight or (DEFAULT_IN_FLIGHT if source.prefix.is_local else DEFAULT_REMOTE_IN_FLIGHT))
        ahead = (in_flight or DEFAULT_IN_FLIGHT, budget) if source.prefix.is_local else (MAX_REMOTE_REQUESTS, budget)
        stream_remap(e, source, template, writer, _aligned(chunk_bytes), stats, _read_block, ahead,
                     _template_slices(template, e.target_key))


def template_keys(plan: Plan, template: BundleReader | None) -> list[str]:
    """The template tensors an output of ``plan`` holds: kept initial values, and a TF2 object graph."""
    if template is None:
        return []
    kept = [e.target_key for e in plan.entries if e.action not in TRANSFERRED]
    return kept + ([OBJECT_GRAPH_KEY] if OBJECT_GRAPH_KEY in template.records else [])


def stream_part(moved: list[PlanEntry], kept: list[str], source: BundleReader, template: BundleReader | None,
                writer: BundleWriter, chunk_bytes: int = DEFAULT_CHUNK_BYTES, progress: Progress | None = None,
                in_flight: int | None = None) -> StreamStats:
    """Write the copy/cast entries ``moved`` from ``source`` and the tensors ``kept`` of ``template``
    into ``writer``: a whole output (:func:`stream_transfer`) or one data file of a sharded one."""
    stats = StreamStats()
    total = sum(source.records[e.source_key].stored_bytes for e in moved)
    done = 0

    def finished(label: str, nbytes: int) -> None:
        nonlocal done
        done += nbytes
        if progress is not None:
            progress(done, total, label)

    # 1. From the source: plain tensors through merged range reads; the rest one by one.
    _copy_planned(moved, source, template, writer, chunk_bytes, stats, in_flight, finished)
    # 2. Initial values from the template, and a TF2 template's object graph.
    if template is not None and kept:
        from_template = write_subset(template, kept, writer, chunk_bytes, in_flight)
        stats.bytes_read += from_template.bytes_read
        stats.requests += from_template.requests
    return stats


def _copy_planned(moved: list[PlanEntry], source: BundleReader, template: BundleReader | None,
                  writer: BundleWriter, chunk_bytes: int, stats: StreamStats, in_flight: int | None,
                  finished: Callable[[str, int], None]) -> None:
    """Write the copy and cast entries from ``source``, laid out as the template stores them."""
    plain, other = [], []
    for e in moved:
        record = source.records[e.source_key]
        sliced = _template_slices(template, e.target_key)
        (plain if _is_plain(record) and not sliced else other).append(e)
    copy_tensors(source, [_Copy(e.source_key, e.target_key, e.dtype, e.target) for e in plain], writer,
                 chunk_bytes, stats, in_flight, on_done=lambda c, n: finished(c.label, n))
    for e in other:
        record = source.records[e.source_key]
        sliced = _template_slices(template, e.target_key)
        if e.action == "cast":
            _write_value(writer, e.target_key, source.read(e.source_key).astype(dtypes.by_name(e.dtype).numpy),
                         e.dtype, sliced)
            stats.bytes_read += record.stored_bytes
        else:
            copy_tensor(source, e.source_key, e.target_key, writer, sliced, chunk_bytes, stats)
        finished(e.target, record.stored_bytes)


def _template_slices(template: BundleReader | None, key: str):
    """The slice extents of a target variable the template stores partitioned (else ())."""
    if template is None:
        return ()
    record = template.records.get(key)
    return tuple(extent for extent, _ in record.slices) if record is not None else ()
