"""Writing TF V2 checkpoints (tensor bundles) through fsspec, without TensorFlow.

:class:`BundleWriter` streams tensor bytes into one data file as they come (any chunking), keeps
only the small index entries in memory, and writes the ``.index`` when :meth:`finish` is called. A
sharded checkpoint is written by one writer per data file (``shard``/``num_shards``, each maybe on
another machine), whose entries :func:`write_index` merges into the one index.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from collections.abc import Iterable
from dataclasses import dataclass

from ...errors import StorageError
from ...storage import Location, is_transient
from .. import dtypes
from . import checksums
from ._ordered_code import slice_key
from ._protos import BundleEntry, BundleHeader, Slice, encode_entry, encode_header
from ._sstable import TableWriter
from ._strings import frame_strings, string_entry_crc
from .reader import data_file_name

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BundleWriter", "WrittenTensor", "encode_array", "write_index", "WRITE_BLOCK_BYTES"]

# Object stores upload in parts of this size (multipart on S3, resumable chunks on GCS); it is also
# what the writer buffers in memory. fsspec's S3 default (50 MiB) would dominate the stream budget.
WRITE_BLOCK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WrittenTensor:
    """What the writer put in its data file for one key (the manifest's per-tensor row): ``size`` stored
    bytes and the masked CRC32C the index records."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    crc32c: int | tuple[int, ...]  # masked, as in the index; one per slice for a partitioned tensor


def encode_array(value: np.ndarray, dtype: str) -> bytes:
    """The bundle bytes of ``value`` as dtype ``dtype`` (little-endian, row-major; strings framed)."""
    import numpy as np

    dt = dtypes.by_name(dtype)
    if dt.name == "string":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(value, dtype=object).ravel()]
        return frame_strings(items)
    if dt.numpy is None:
        raise ValueError(f"cannot encode dtype {dtype}")
    return np.ascontiguousarray(value, dtype=dt.numpy.newbyteorder("<")).tobytes()


class BundleWriter:
    """Write a checkpoint at ``prefix`` (a :class:`Location` without suffix): data file ``shard`` of
    ``num_shards`` (by default the only one), under its own name or at ``data_loc`` (a staging name).

    Add tensors in any order with :meth:`add_array`, :meth:`add_chunks` or :meth:`add_slices`, then
    :meth:`finish` writes the index (or :meth:`close_data` returns the entries, for :func:`write_index`
    to merge with other shards'). :meth:`abort` removes what was written. Keys must be unique.
    """

    def __init__(self, prefix: Location, shard: int = 0, num_shards: int = 1, data_loc: Location | None = None):
        self.prefix = prefix
        self.shard, self.num_shards = shard, num_shards
        base = prefix.path.rsplit("/", 1)
        self.data_loc = data_loc or Location(prefix.fs, "/".join([*base[:-1], data_file_name(base[-1], shard,
                                                                                             num_shards)]))
        self.index_loc = prefix.with_suffix(".index")
        self._index_written = False
        self._entries: dict[bytes, BundleEntry] = {}
        self._written: list[WrittenTensor] = []
        self._offset = 0
        self._open: tuple | None = None  # (key, dtype, shape, start offset, running crc, known crc)
        self._reserved = False  # space allocated ahead in the local data file (see reserve)
        try:
            prefix.fs.makedirs(prefix.fs._parent(prefix.path), exist_ok=True)
            self._data = prefix.fs.open(self.data_loc.path, "wb", block_size=WRITE_BLOCK_BYTES)
            # A local data file can receive bytes copied by the kernel (see copy_from).
            self._fd: int | None = self._data.fileno() if prefix.is_local else None
        except OSError as exc:
            raise StorageError(f"cannot create {self.data_loc.url}: {exc}", is_transient(exc)) from None

    @property
    def written(self) -> tuple[WrittenTensor, ...]:
        return tuple(self._written)

    @property
    def bytes_written(self) -> int:
        return self._offset

    def _claim(self, key: str) -> bytes:
        raw = key.encode()
        if raw in self._entries or not raw or raw.startswith(b"\x00"):
            raise ValueError(f"tensor key {key!r} is empty, reserved or added twice")
        return raw

    def _write(self, chunk: bytes | memoryview) -> None:
        try:
            self._data.write(chunk)
        except OSError as exc:
            raise StorageError(f"writing {self.data_loc.url} failed: {exc}", is_transient(exc)) from None
        self._offset += len(chunk)

    def begin(self, key: str, dtype: str, shape: tuple[int, ...], crc32c: int | None = None) -> None:
        """Start a tensor; its bytes follow with :meth:`write` and it ends with :meth:`end`.

        ``crc32c`` (masked) is the CRC of the bytes that will follow when the caller already knows it
        (a byte-for-byte copy of a source tensor whose CRC the caller verifies before :meth:`end`);
        the writer then does not compute it again. Otherwise the writer computes it as bytes pass.
        """
        if self._open is not None:
            raise ValueError(f"tensor {self._open[0]!r} is still open")
        self._claim(key)
        self._open = (key, dtype, tuple(shape), self._offset, 0 if crc32c is None else None, crc32c)

    def write(self, chunk: bytes | memoryview) -> None:
        key, dtype, shape, start, crc, known = self._open  # type: ignore[misc]
        self._write(chunk)
        if crc is not None:
            self._open = (key, dtype, shape, start, checksums.extend(crc, chunk), known)

    def reserve(self, nbytes: int) -> None:
        """Allocate the next ``nbytes`` of a local data file before they are written (the kernel copies into
        allocated blocks faster: :func:`warmstart.storage.reserve_space`); the file is cut to the bytes
        actually written when it is closed. Nothing happens for an object store or where the filesystem cannot."""
        if self._fd is None or nbytes <= 0:
            return
        from ...storage import reserve_space

        try:
            self._data.flush()  # the file's end is then where the next byte goes
            self._reserved = reserve_space(self._fd, self._offset, nbytes) or self._reserved
        except OSError as exc:
            raise StorageError(f"writing {self.data_loc.url} failed: {exc}", is_transient(exc)) from None

    def copy_from(self, fd: int, offset: int, size: int, view: memoryview) -> None:
        """Append to the open tensor the ``size`` bytes at ``offset`` of the local file ``fd``, which
        are also ``view`` (a mapping of them): the kernel copies them (``copy_file_range``) when the
        output is a local file too, else ``view`` is written. The CRC must have been given to
        :meth:`begin` (nothing here looks at the bytes)."""
        key, dtype, shape, start, crc, known = self._open  # type: ignore[misc]
        if crc is not None:
            raise ValueError("copy_from needs the tensor's CRC at begin()")
        done = 0
        if self._fd is not None and size:
            from ...storage import kernel_copy

            try:
                self._data.flush()
                done = kernel_copy(fd, self._fd, offset, size)
            except OSError as exc:
                raise StorageError(f"writing {self.data_loc.url} failed: {exc}", is_transient(exc)) from None
            if done == 0:
                self._fd = None  # the kernel cannot copy between these files: write from now on
            self._offset += done
        if done < size:
            self._write(view[done:size])

    def end(self, crc32c: int | None = None) -> WrittenTensor:
        """Finish the open tensor. ``crc32c`` (masked) is required for string tensors, whose entry
        CRC is not a plain CRC of their bytes; otherwise the CRC given to :meth:`begin` or the CRC
        of the written bytes is used."""
        key, dtype, shape, start, crc, known = self._open  # type: ignore[misc]
        self._open = None
        size = self._offset - start
        masked = crc32c if crc32c is not None else known if known is not None else checksums.mask(crc)
        entry = BundleEntry(dtypes.by_name(dtype).enum, shape, False, self.shard, start, size, masked)
        self._entries[key.encode()] = entry
        written = WrittenTensor(key, dtype, shape, size, masked)
        self._written.append(written)
        return written

    def add_chunks(self, key: str, dtype: str, shape: tuple[int, ...], chunks: Iterable[bytes | memoryview],
                   crc32c: int | None = None) -> WrittenTensor:
        """Write a whole tensor from an iterable of byte chunks (see :meth:`end` for ``crc32c``)."""
        self.begin(key, dtype, shape)
        for chunk in chunks:
            self.write(chunk)
        return self.end(crc32c)

    def add_array(self, key: str, value: np.ndarray, dtype: str) -> WrittenTensor:
        import numpy as np

        data = encode_array(value, dtype)
        crc = string_entry_crc(data, int(np.prod(value.shape, dtype=np.int64))) if dtype == "string" else None
        return self.add_chunks(key, dtype, tuple(value.shape), [data], crc32c=crc)

    def add_slices(self, key: str, value: np.ndarray, dtype: str,
                   extents: Iterable[tuple[tuple[int, int], ...]]) -> WrittenTensor:
        """Write ``value`` as a partitioned variable with the given slice extents, as TF1 Saver does."""
        import numpy as np

        extents = tuple(extents)
        raw = self._claim(key)
        size = 0
        crcs = []
        for extent in extents:
            region = tuple(slice(s, None if n == -1 else s + n) for s, n in extent)
            part = np.ascontiguousarray(value[region])
            data = encode_array(part, dtype)
            crc = string_entry_crc(data, part.size) if dtype == "string" else checksums.mask(checksums.crc32c(data))
            self._entries[slice_key(key, extent)] = BundleEntry(
                dtypes.by_name(dtype).enum, tuple(part.shape), False, self.shard, self._offset, len(data), crc)
            self._write(data)
            size += len(data)
            crcs.append(crc)
        slices = tuple(Slice(e) for e in extents)
        self._entries[raw] = BundleEntry(dtypes.by_name(dtype).enum, tuple(value.shape), slices=slices)
        written = WrittenTensor(key, dtype, tuple(value.shape), size, tuple(crcs))
        self._written.append(written)
        return written

    def close_data(self) -> dict[bytes, BundleEntry]:
        """Close the data file (on an object store: complete its upload); returns the index entries."""
        try:
            if self._reserved:  # space allocated ahead and not written: not part of the file
                self._data.flush()
                os.ftruncate(self._data.fileno(), self._offset)
            self._data.close()
        except OSError as exc:
            raise StorageError(f"writing {self.data_loc.url} failed: {exc}", is_transient(exc)) from None
        return dict(self._entries)

    def finish(self) -> None:
        """Close the data file, then write the index (header first, keys in bytewise order)."""
        entries = self.close_data()
        self._index_written = True
        write_index(self.index_loc, entries, self.num_shards)

    def abort(self) -> None:
        """Discard the checkpoint: close and remove whatever was written (best effort, never raises)."""
        try:
            self._data.close()
        except OSError:
            pass
        for loc in (self.data_loc, self.index_loc) if self._index_written else (self.data_loc,):
            try:
                if loc.fs.exists(loc.path):
                    loc.fs.rm(loc.path)
            except OSError:
                pass


def write_index(index_loc: Location, entries: dict[bytes, BundleEntry], num_shards: int = 1) -> None:
    """Write the ``.index`` of a checkpoint of ``num_shards`` data files: header first, then ``entries``
    (raw key -> entry, each naming its shard) in bytewise key order."""
    try:
        table = TableWriter()
        table.add(b"", encode_header(BundleHeader(num_shards=num_shards)))
        for raw in sorted(entries):
            table.add(raw, encode_entry(entries[raw]))
        with index_loc.fs.open(index_loc.path, "wb") as f:
            f.write(table.finish())
    except OSError as exc:
        raise StorageError(f"writing {index_loc.url} failed: {exc}", is_transient(exc)) from None
