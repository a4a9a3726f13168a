"""Executing a plan's ``remap`` entries (vocabulary remap, overlap copy: :mod:`warmstart.planning.transforms`;
block ops and concat: :mod:`warmstart.planning.blocks`).

:func:`remap_value` works on whole values (the TF strategies, the Keras stream, live copies), :func:`remap_from`
reads them from a reader first (every source of a concat). Block transforms are computed on whole values
everywhere, the stream's too (each source read whole, CRC-checked).
:func:`stream_remap` writes one remapped tensor into a checkpoint in bounded memory: the output is built
in chunks of rows; for each chunk only the source rows it needs are read (rows are contiguous along
axis 0; runs of neighbouring rows merged into ranged reads), and the initial values of the new rows
from the template. A partial read cannot check the source tensor's CRC32C (it covers the whole
tensor): it is checked when every source row is read in order, else the key is listed in
``StreamStats.unchecked``, and so for the template's rows; the output's CRC is computed over the bytes written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InputNotFoundError, UsageError
from ..formats import dtypes
from ..formats.bundle import BundleReader, BundleWriter, checksums
from ..planning import MAIN_SOURCE, Blocks, BlockSource, PlanEntry
from ..storage import fetch_blocks, plan_blocks

if TYPE_CHECKING:
    import numpy as np

__all__ = ["check_readable", "other_sources", "remap_from", "remap_value", "stream_remap"]


def other_sources(entry: PlanEntry) -> tuple[BlockSource, ...]:
    """The sources a ``remap`` entry reads besides ``entry.source`` (a concat's others), in order."""
    return entry.remap.sources[1:] if isinstance(entry.remap, Blocks) else ()


def check_readable(entry: PlanEntry, source: BundleReader, template: BundleReader | None) -> None:
    """Raise :class:`InputNotFoundError` naming the target variable when a tensor ``entry`` reads is not in
    ``source`` (or its initial value not in ``template``): a plan made for other inputs (``transfer(plan=...)``)."""
    for key in (entry.source_key, *(s.key for s in other_sources(entry))):
        if key not in source.records:
            raise InputNotFoundError(f"target {entry.target!r}: its source tensor {key!r} is not in {source.url}; "
                                     "was the plan made for another source? Plan again against this one")
    remap = entry.remap
    if template is not None and remap is not None and remap.needs_initial and entry.target_key not in template.records:
        raise InputNotFoundError(f"target {entry.target!r}: its initial value {entry.target_key!r} is not in the "
                                 f"template {template.url}; was the plan made for another target? Plan again")


def remap_from(reader: Any, entry: PlanEntry, initial: Callable[[], np.ndarray]) -> np.ndarray:
    """:func:`remap_value` of the values ``reader`` (a checkpoint or Keras weights reader) holds."""
    others = [reader.read(s.key) for s in other_sources(entry)]
    return remap_value(reader.read(entry.source_key), entry, initial, others)


def remap_value(value: np.ndarray, entry: PlanEntry, initial: Callable[[], np.ndarray],
                others: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The target's value for a ``remap`` entry from the source's whole ``value`` (and a concat's
    ``others``, as :func:`other_sources` orders them); ``initial()`` gives the target's initial value (asked
    only when rows keep it). A cast to the target's dtype comes last."""
    import numpy as np

    remap = entry.remap
    assert remap is not None
    shape = tuple(int(n) for n in entry.shape)  # type: ignore[arg-type]
    out_dtype = dtypes.by_name(entry.dtype).numpy
    if isinstance(remap, Blocks):
        value = remap.apply([np.asarray(value), *(np.asarray(v) for v in others)])
        return np.ascontiguousarray(value if out_dtype is None else value.astype(out_dtype, copy=False))
    base = np.asarray(initial()) if remap.needs_initial else _zeros(shape, out_dtype)
    out = np.array(base, dtype=out_dtype, copy=True).reshape(shape)
    _fill_from(out, np.asarray(value), remap, 0, shape)
    _fill_initializer(out, remap, 0, shape)
    return out


def _zeros(shape: tuple[int, ...], dtype: np.dtype | None) -> np.ndarray:
    """Zeros of a NumPy ``dtype``, or empty strings for a string tensor (``None``: no NumPy type), as ``tf.zeros``."""
    import numpy as np

    return np.zeros(shape, dtype) if dtype is not None else np.full(shape, b"", dtype=object)


def _fill_from(out: np.ndarray, rows: np.ndarray, remap, first: int, shape,
               row_index: np.ndarray | None = None) -> None:
    """Write into ``out`` (target rows ``first...``) the source entries ``rows`` holds for them: ``rows``
    is indexed by source row along axis 0, or by ``row_index`` (the chunk's rows' places in ``rows``)."""
    import numpy as np

    idx = [remap.index(d, n) for d, n in enumerate(shape)]
    idx[0] = idx[0][first : first + out.shape[0]] if row_index is None else row_index
    if remap.fill != "mean" and all(m is None for m in remap.maps[1:]):  # whole rows: a plain row gather
        rows_at = np.flatnonzero(idx[0] >= 0)
        out[rows_at] = rows[idx[0][rows_at]]
        return
    have = [np.nonzero(m >= 0)[0] for m in idx]
    src = [m[h] for m, h in zip(idx, have)]
    if any(len(h) == 0 for h in have):
        return
    out[np.ix_(*have)] = rows[np.ix_(*src)].astype(out.dtype, copy=False)
    if remap.fill == "mean":
        _fill_mean(out, have, remap.axis)


def _fill_initializer(out: np.ndarray, remap, first: int, shape) -> None:
    """With a declared initializer: the entries of ``out`` (target rows ``first...``) that have no source get
    its values, which depend only on their places in the whole target (the same in a chunk as in the whole)."""
    import numpy as np

    if remap.initializer is None:
        return
    missing = np.zeros(out.shape, dtype=bool)
    for d, n in enumerate(shape):
        m = remap.index(d, n)[first : first + out.shape[0]] if d == 0 else remap.index(d, n)
        missing |= (m < 0).reshape([-1 if k == d else 1 for k in range(out.ndim)])
    at = np.flatnonzero(missing)
    if len(at):
        row = int(np.prod(shape[1:], dtype=np.int64))
        out.reshape(-1)[at] = remap.initializer.values_at(at + first * row).astype(out.dtype)


def _fill_mean(out: np.ndarray, have: list[np.ndarray], axis: int) -> None:
    import numpy as np

    copied = np.take(out, have[axis], axis=axis)
    mean = copied.mean(axis=axis, keepdims=True) if copied.shape[axis] else 0
    missing = np.setdiff1d(np.arange(out.shape[axis]), have[axis])
    region = [slice(None)] * out.ndim
    region[axis] = missing
    out[tuple(region)] = mean


def stream_remap(entry: PlanEntry, source: BundleReader, template: BundleReader | None, writer: BundleWriter,
                 chunk_bytes: int, stats: Any, read_block: Callable, in_flight: tuple[int, int], sliced=()) -> None:
    """Write the remapped tensor of ``entry`` into ``writer``, reading only the source rows it keeps;
    ``in_flight``: (reads, chunks' worth of bytes) outstanding at most; ``sliced``: the extents of a
    target the template stores partitioned."""
    import numpy as np

    remap = entry.remap
    assert remap is not None
    check_readable(entry, source, template)
    record = source.records[entry.source_key]  # type: ignore[index]
    shape = tuple(int(n) for n in entry.shape)  # type: ignore[arg-type]
    if remap.needs_initial and template is None:
        raise UsageError(f"target {entry.target!r}: its new rows keep their initial value, but the target has no "
                         "template checkpoint to take it from (new_row: zeros or mean, or a template target)")
    if isinstance(remap, Blocks) or record.slices or sliced or record.dtype == "string" or remap.fill == "mean":
        _remap_whole(entry, source, template, writer, stats, sliced)
        return
    rows_reader = _Rows(source, entry.source_key, read_block, chunk_bytes, in_flight, stats)
    init_reader = _Rows(template, entry.target_key, read_block, chunk_bytes, in_flight, stats) if remap.needs_initial else None
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtypes.by_name(entry.dtype).itemsize)
    step = max(1, chunk_bytes // row_bytes)
    # One chunk buffer for the whole tensor: every row of it is written before it is used (no zeroing, no
    # fresh pages per chunk); the writer copies or writes it out before the next chunk.
    buffer = np.empty((min(step, shape[0]), *shape[1:]), dtypes.by_name(entry.dtype).numpy)
    # The tensor's blocks allocated before its rows are written (faster writes; a full disk found first).
    writer.reserve(int(np.prod(shape, dtype=np.int64)) * dtypes.by_name(entry.dtype).itemsize)
    writer.begin(entry.target_key, entry.dtype, shape)
    for first in range(0, shape[0], step):
        out = _remap_chunk(entry, first, min(shape[0], first + step), rows_reader, init_reader, buffer)
        writer.write(memoryview(out).cast("B"))
    writer.end()
    partial = [] if rows_reader.finish() else [
        {"checkpoint": "source", "source": entry.from_source or MAIN_SOURCE, "key": entry.source_key}]
    if init_reader is not None and not init_reader.finish():
        partial.append({"checkpoint": "template", "key": entry.target_key})
    stats.unchecked = (*stats.unchecked, *partial)


def _remap_chunk(entry: PlanEntry, first: int, last: int, rows_reader: _Rows, init_reader: _Rows | None,
                 buffer: np.ndarray) -> np.ndarray:
    """Target rows ``first:last`` in ``buffer``'s first rows: the new rows' initial values (or zeros), then
    the source rows they keep."""
    import numpy as np

    remap = entry.remap
    assert remap is not None
    shape = tuple(int(n) for n in entry.shape)  # type: ignore[arg-type]
    wanted = remap.index(0, shape[0])[first:last]
    out = buffer[: last - first]
    whole_rows = all(m is None for m in remap.maps[1:])
    if init_reader is None:  # zeros where no source entry lands (whole rows: just the new ones)
        out[wanted < 0 if whole_rows else slice(None)] = 0
    else:
        # only the rows that keep an initial value: all of them when another axis has entries without a source
        fresh = np.flatnonzero(wanted < 0) if whole_rows else np.arange(last - first)
        if len(fresh):
            init_reader.into(out, fresh, fresh + first)
    _fill_initializer(out, remap, first, shape)
    if whole_rows:  # each run of rows read straight into its place in the output (from a local file)
        kept = np.flatnonzero(wanted >= 0)
        rows_reader.into(out, kept, wanted[kept])
        return out
    needed = np.unique(wanted[wanted >= 0])
    if len(needed):
        places = np.full(len(wanted), -1, dtype=np.int64)
        places[wanted >= 0] = np.searchsorted(needed, wanted[wanted >= 0])
        _fill_from(out, rows_reader.rows(needed), remap, first, shape, places)
    return out


def _remap_whole(entry: PlanEntry, source: BundleReader, template: BundleReader | None, writer: BundleWriter,
                 stats: Any, sliced) -> None:
    """Block transforms, partitioned or string tensors, and means (every copied row first): one value in memory
    (each source read whole, CRC-checked), written as the template's slices when it has them."""
    initial = (lambda: template.read(entry.target_key)) if template is not None else (lambda: None)
    value = remap_from(source, entry, initial)  # type: ignore[arg-type]
    keys = [entry.source_key, *(s.key for s in other_sources(entry))]
    stats.bytes_read += sum(source.records[k].stored_bytes for k in keys)  # type: ignore[index]
    if sliced:
        writer.add_slices(entry.target_key, value, entry.dtype, sliced)
    else:
        writer.add_array(entry.target_key, value, entry.dtype)


class _Rows:
    """Reads rows (along axis 0) of one plain tensor by merged byte ranges; checks the tensor's CRC32C when
    its rows were read exactly once each, in order (a full, ordered pass)."""

    def __init__(self, reader: BundleReader, key: str, read_block: Callable, chunk_bytes: int,
                 in_flight: tuple[int, int], stats: Any):
        import numpy as np

        record = reader.records[key]
        self.reader, self.key, self.entry = reader, key, record.entry
        self.dtype = dtypes.by_name(record.dtype).numpy.newbyteorder("<")  # type: ignore[union-attr]
        self.inner = tuple(record.shape[1:])
        self.row_bytes = int(np.prod(self.inner, dtype=np.int64)) * self.dtype.itemsize
        self.read_block, self.chunk_bytes, self.in_flight, self.stats = read_block, chunk_bytes, in_flight, stats
        self.next_row, self.crc, self.in_order = 0, 0, True
        reader.check_in_files(key, [self.entry])

    @property
    def local(self) -> bool:
        return self.reader.prefix.is_local

    def into(self, out: np.ndarray, places: np.ndarray, rows: np.ndarray) -> None:
        """``out[places] = rows of the tensor``; from a local file each run (consecutive in both) is one
        ``pread`` into ``out``, otherwise the rows are read by range, then placed."""
        import numpy as np

        if not len(places):
            return
        if not self.local or out.dtype != self.dtype:  # object storage, or a cast on the way
            order = np.unique(rows)
            out[places] = self.rows(order)[np.searchsorted(order, rows)]
            return
        breaks = np.flatnonzero((np.diff(places) != 1) | (np.diff(rows) != 1)) + 1
        starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(places)]])
        view = memoryview(out.reshape(len(out), -1)).cast("B")
        self._pread_runs(view, [(int(places[a]) * self.row_bytes, int(rows[a]), int(b - a))
                                for a, b in zip(starts, ends)])
        if len(starts) == 1 and int(places[0]) == 0 and len(places) == len(out):  # the whole chunk, in order
            self._track(rows, view)
        else:
            self.in_order = False

    def _pread_runs(self, view: memoryview, runs: list[tuple[int, int, int]]) -> None:
        """(byte position in ``view``, first row, row count) for each run, read from the local data file."""
        from ..errors import CorruptCheckpointError

        path = self.reader.data_location(self.entry.shard_id).path
        fd = os.open(path, os.O_RDONLY)
        try:
            for at, row, count in runs:
                size = count * self.row_bytes
                if os.preadv(fd, [view[at : at + size]], self.entry.offset + row * self.row_bytes) != size:
                    raise CorruptCheckpointError(f"{path}: tensor {self.key!r} is past the file's end (truncated?)")
        finally:
            os.close(fd)
        self.stats.bytes_read += sum(count for _, _, count in runs) * self.row_bytes
        self.stats.requests += len(runs)

    def rows(self, needed: np.ndarray) -> np.ndarray:
        """Rows ``needed`` (sorted, unique) as an array ``(len(needed), *inner)``."""
        import numpy as np

        starts = np.flatnonzero(np.diff(needed, prepend=needed[0] - 2) != 1)
        ends = np.append(starts[1:], len(needed))
        buf = bytearray(len(needed) * self.row_bytes)
        view = memoryview(buf)
        if self.reader.prefix.is_local:
            self._pread(needed, starts, ends, view)
        else:
            self._fetch(needed, starts, ends, view)
        self._track(needed, view)
        return np.frombuffer(buf, dtype=self.dtype).reshape(len(needed), *self.inner)

    def _pread(self, needed, starts, ends, view: memoryview) -> None:
        """Each run of neighbouring rows read straight into its place (no mapping: the process's resident
        memory stays the chunk's)."""
        self._pread_runs(view, [(a * self.row_bytes, int(needed[a]), b - a)
                                for a, b in zip(starts.tolist(), ends.tolist())])

    def _fetch(self, needed, starts, ends, view: memoryview) -> None:
        """Runs of neighbouring rows as merged, bounded ranged reads (object stores)."""
        place, requests = {}, []
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            place[i] = [a * self.row_bytes, 0]
            requests.append((i, self.entry.shard_id, self.entry.offset + int(needed[a]) * self.row_bytes,
                             (b - a) * self.row_bytes))
        blocks = plan_blocks(requests, max_block=self.chunk_bytes, max_gap=0)
        count, budget = self.in_flight
        for block, data in fetch_blocks(blocks, lambda block: self.read_block(self.reader, block), count,
                                        budget * self.chunk_bytes):
            self.stats.bytes_read += block.size
            self.stats.requests += 1
            for piece in block.pieces:
                at = place[piece.tag]
                view[at[0] + at[1] : at[0] + at[1] + piece.size] = memoryview(data)[piece.start : piece.start + piece.size]
                at[1] += piece.size

    def _track(self, needed: np.ndarray, view: memoryview) -> None:
        if self.in_order and len(needed) and needed[0] == self.next_row and needed[-1] == self.next_row + len(needed) - 1:
            self.crc = checksums.extend(self.crc, view)
            self.next_row += len(needed)
        else:
            self.in_order = False

    def finish(self) -> bool:
        """Check the CRC after a full ordered pass (True); False: the tensor was read in part or out of order,
        its CRC could not be checked. Raises :class:`CorruptCheckpointError` for a CRC that does not match."""
        from ..errors import CorruptCheckpointError

        if not (self.in_order and self.next_row == self.reader.records[self.key].shape[0]):
            return False
        if checksums.mask(self.crc) != self.entry.crc32c:
            raise CorruptCheckpointError(f"{self.reader.url}: tensor {self.key!r} fails its CRC32C check (data corrupted)")
        return True
