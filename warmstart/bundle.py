"""Reading TF V2 checkpoints ("tensor bundles") through fsspec, without TensorFlow.

:class:`BundleReader` parses the ``.index`` once, then reads only the byte ranges of the
tensors asked for, verifying each tensor's CRC32C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _crc, dtypes
from ._ordered_code import slice_key
from ._protos import BundleEntry, BundleHeader, decode_entry, decode_header
from ._sstable import TableFormatError, read_table
from ._strings import string_entry_crc, string_lengths
from .errors import CorruptCheckpointError, InputNotFoundError
from .storage import Location, read_bytes, read_range, resolve_checkpoint

__all__ = ["BundleReader", "TensorRecord", "data_file_name"]


def data_file_name(prefix_base: str, shard: int, num_shards: int) -> str:
    return f"{prefix_base}.data-{shard:05d}-of-{num_shards:05d}"


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """One logical tensor in a bundle: its key, dtype name, shape and where its bytes are."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    entry: BundleEntry
    # For partitioned variables: (extent, entry of that slice) per slice; empty otherwise.
    slices: tuple[tuple[tuple[tuple[int, int], ...], BundleEntry], ...] = ()

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def stored_bytes(self) -> int:
        if self.slices:
            return sum(e.size for _, e in self.slices)
        return self.entry.size


class BundleReader:
    """An opened checkpoint: its header and tensor records; tensors are read on demand.

    Raises :class:`InputNotFoundError` when there is no checkpoint at ``url`` and
    :class:`CorruptCheckpointError` when its index cannot be parsed.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self._open(resolve_checkpoint(url, storage_options))

    @classmethod
    def at_prefix(cls, prefix: Location) -> "BundleReader":
        """Open the checkpoint whose prefix is already resolved (no directory lookup)."""
        reader = cls.__new__(cls)
        reader._open(prefix)
        return reader

    @classmethod
    def with_index(cls, prefix: Location, index_bytes: bytes) -> "BundleReader":
        """Open the checkpoint at ``prefix`` with its index already in hand (say, from a cache)."""
        reader = cls.__new__(cls)
        reader._open(prefix, index_bytes)
        return reader

    def _open(self, prefix: Location, index_bytes: bytes | None = None) -> None:
        self.prefix = prefix
        self.url = prefix.url
        index_loc = self.prefix.with_suffix(".index")
        self.index_bytes = read_bytes(index_loc) if index_bytes is None else index_bytes
        self.header, self.records = _parse_index(self.index_bytes, index_loc.url)

    def __repr__(self) -> str:
        return f"BundleReader({self.url!r}, {len(self.records)} tensors)"

    def data_location(self, shard: int) -> Location:
        base = self.prefix.path.rsplit("/", 1)
        name = data_file_name(base[-1], shard, self.header.num_shards)
        return Location(self.prefix.fs, f"{base[0]}/{name}" if len(base) == 2 else name)

    def read_entry_bytes(self, key: str, entry: BundleEntry) -> bytes:
        """The stored bytes of one (unpartitioned) entry, CRC-checked."""
        loc = self.data_location(entry.shard_id)
        data = read_range(loc, entry.offset, entry.offset + entry.size) if entry.size else b""
        if len(data) != entry.size:
            raise CorruptCheckpointError(
                f"{loc.url}: tensor {key!r} needs bytes {entry.offset}..{entry.offset + entry.size}, "
                f"but the file ends after {entry.offset + len(data)} (truncated?)"
            )
        if _crc.mask(_crc.crc32c(data)) != entry.crc32c and not _string_crc_ok(data, entry):
            raise CorruptCheckpointError(f"{loc.url}: tensor {key!r} fails its CRC32C check (data corrupted)")
        return data

    def read(self, key: str) -> np.ndarray:
        """The value of tensor ``key`` as a NumPy array (strings as an object array of bytes)."""
        try:
            record = self.records[key]
        except KeyError:
            raise InputNotFoundError(f"{self.url} has no tensor {key!r}") from None
        if not record.slices:
            return _decode(self.read_entry_bytes(key, record.entry), record, key, self.url)
        dt = dtypes.by_enum(record.entry.dtype)
        out = np.empty(record.shape, dtype=dt.numpy if dt.numpy is not None else object)
        for extent, entry in record.slices:
            region = tuple(slice(s, None if n == -1 else s + n) for s, n in extent)
            part = TensorRecord(key, record.dtype, entry.shape, entry)
            out[region] = _decode(self.read_entry_bytes(key, entry), part, key, self.url)
        return out


def _string_crc_ok(data: bytes, entry: BundleEntry) -> bool:
    if entry.dtype != 7:
        return False
    try:
        return string_entry_crc(data, int(np.prod(entry.shape, dtype=np.int64)) if entry.shape else 1) == entry.crc32c
    except ValueError:
        return False


def _decode(data: bytes, record: TensorRecord, key: str, url: str) -> np.ndarray:
    dt = dtypes.by_enum(record.entry.dtype)
    shape = record.entry.shape
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dt.name == "string":
        try:
            lengths, pos = string_lengths(data, count)
        except ValueError as exc:
            raise CorruptCheckpointError(f"{url}: string tensor {key!r}: {exc}") from None
        pos += 4
        values = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            values[i] = data[pos : pos + n]
            pos += n
        return values.reshape(shape)
    if dt.numpy is None:
        raise CorruptCheckpointError(f"{url}: tensor {key!r} has dtype {dt.name}, which has no array form")
    if len(data) != count * dt.itemsize:
        raise CorruptCheckpointError(
            f"{url}: tensor {key!r} of shape {list(shape)} {dt.name} should have "
            f"{count * dt.itemsize} bytes, has {len(data)}"
        )
    return np.frombuffer(data, dtype=dt.numpy.newbyteorder("<")).reshape(shape)


def _parse_index(data: bytes, url: str) -> tuple[BundleHeader, dict[str, TensorRecord]]:
    header: BundleHeader | None = None
    entries: dict[bytes, BundleEntry] = {}
    try:
        for key, value in read_table(data):
            if key == b"":
                header = decode_header(value)
            else:
                entries[key] = decode_entry(value)
    except TableFormatError as exc:
        raise CorruptCheckpointError(f"{url}: not a valid checkpoint index: {exc}") from None
    except ValueError as exc:
        raise CorruptCheckpointError(f"{url}: malformed index entry: {exc}") from None
    if header is None:
        raise CorruptCheckpointError(f"{url}: the index has no bundle header (empty or not a checkpoint index)")
    if header.endianness != 0:
        raise CorruptCheckpointError(f"{url}: big-endian checkpoints are not supported")
    if header.num_shards < 1:
        raise CorruptCheckpointError(f"{url}: header declares {header.num_shards} shards")
    records: dict[str, TensorRecord] = {}
    for raw, entry in entries.items():
        if raw.startswith(b"\x00"):
            continue  # a slice of a partitioned variable; gathered under its full name below
        key = raw.decode("utf-8", "surrogateescape")
        records[key] = _record(key, entry, entries, header, url)
    return header, records


def _record(key: str, entry: BundleEntry, entries: dict[bytes, BundleEntry], header: BundleHeader, url: str):
    try:
        dtype = dtypes.by_enum(entry.dtype).name
    except KeyError:
        raise CorruptCheckpointError(f"{url}: tensor {key!r} has unknown dtype enum {entry.dtype}") from None
    if entry.unknown_rank or any(d < 0 for d in entry.shape):
        raise CorruptCheckpointError(f"{url}: tensor {key!r} has an unknown shape {list(entry.shape)}")
    slices = []
    for s in entry.slices:
        extent = tuple((start, length) for start, length in s.extent)
        if len(extent) < len(entry.shape):  # trailing dims absent from the proto are full
            extent += ((0, -1),) * (len(entry.shape) - len(extent))
        part = entries.get(slice_key(key, extent))
        if part is None:
            raise CorruptCheckpointError(f"{url}: partitioned tensor {key!r} lacks its slice {list(extent)}")
        slices.append((extent, part))
    for e in [entry] if not slices else [p for _, p in slices]:
        if e.shard_id >= header.num_shards:
            raise CorruptCheckpointError(f"{url}: tensor {key!r} is in shard {e.shard_id} of {header.num_shards}")
    return TensorRecord(key, dtype, tuple(entry.shape), entry, tuple(slices))
