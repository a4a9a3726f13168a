"""Reading TF V2 checkpoints ("tensor bundles") through fsspec, without TensorFlow.

:class:`BundleReader` parses the ``.index`` once, then reads only the byte ranges of the
tensors asked for, verifying each tensor's CRC32C.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import CorruptCheckpointError, InputNotFoundError, UnsupportedFormatError
from ...storage import INDEX_BYTES, Location, object_size, object_version, read_bytes, read_range, resolve
from .. import dtypes
from ..interface import ReaderKind, StoredTensor
from ..sniff import describe_file
from . import checksums
from ._ordered_code import slice_key
from .directory import resolve_checkpoint
from ._protos import BundleEntry, BundleHeader, decode_entry, decode_header
from ._sstable import TableFormatError, read_table
from ._strings import string_entry_crc, string_lengths

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BundleReader", "TensorRecord", "data_file_name"]


def data_file_name(prefix_base: str, shard: int, num_shards: int) -> str:
    return f"{prefix_base}.data-{shard:05d}-of-{num_shards:05d}"


@dataclass(frozen=True, slots=True)
class TensorRecord(StoredTensor):
    """One logical tensor in a bundle: its key, dtype name, shape and where its bytes are."""

    entry: BundleEntry
    # For partitioned variables: (extent, entry of that slice) per slice; empty otherwise.
    slices: tuple[tuple[tuple[tuple[int, int], ...], BundleEntry], ...] = ()

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

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

    reader_kind: ClassVar[ReaderKind] = "tf-checkpoint"

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        try:
            prefix = resolve_checkpoint(url, storage_options)
        except InputNotFoundError:
            _refuse_other_kinds(url, storage_options)
            raise
        self._open(prefix)

    @classmethod
    def at_prefix(cls, prefix: Location) -> "BundleReader":
        """Open the checkpoint whose prefix is already resolved (no directory lookup)."""
        reader = cls.__new__(cls)
        reader._open(prefix)
        return reader

    @classmethod
    def with_index(cls, prefix: Location, index_bytes: bytes, version: dict[str, Any] | None = None) -> "BundleReader":
        """Open the checkpoint at ``prefix`` with its index already in hand (say, from a cache), ``version``
        the index's version when it was read (:func:`~warmstart.storage.object_version`)."""
        reader = cls.__new__(cls)
        reader._open(prefix, index_bytes, version)
        return reader

    def _open(self, prefix: Location, index_bytes: bytes | None = None, version: dict[str, Any] | None = None) -> None:
        self.prefix = prefix
        self.url = prefix.url
        self._shard_sizes: dict[int, int] = {}
        index_loc = self.prefix.with_suffix(".index")
        if index_bytes is None:
            version = object_version(index_loc)  # asked first: a later change shows as another version
            index_bytes = read_bytes(index_loc, INDEX_BYTES)
        self.index_bytes = index_bytes
        #: The versions of the files read so far (the index), by URL: what a plan made from this reader pins.
        self.versions: dict[str, dict[str, Any]] = {index_loc.url: version} if version else {}
        self._beside: dict[str, Location] = {}
        self.header, self.records = _parse_index(self.index_bytes, index_loc.url)

    def __repr__(self) -> str:
        return f"BundleReader({self.url!r}, {len(self.records)} tensors)"

    def files(self) -> list[Location]:
        """The files a transfer from it reads: the index and the data shards its entries use."""
        shards = {e.shard_id for r in self.records.values() for e in ([r.entry] if not r.slices else
                                                                       [p for _, p in r.slices])}
        return [self.prefix.with_suffix(".index"), *(self.data_location(s) for s in sorted(shards))]

    def read_beside(self, suffix: str) -> tuple[Location, bytes] | None:
        """The file written beside the checkpoint (``<prefix><suffix>``: a TF1 ``.meta``), read whole (at most
        :data:`~warmstart.storage.INDEX_BYTES`), its version recorded with the index's; None when there is none
        (one existence check, nothing read)."""
        loc = self.prefix.with_suffix(suffix)
        try:
            version = object_version(loc)  # asked first, as the index's: a later change shows as another version
        except InputNotFoundError:
            return None
        data = read_bytes(loc, INDEX_BYTES)
        self.versions[loc.url] = version
        self._beside[loc.url] = loc
        return loc, data

    def pinned_files(self) -> list[Location]:
        """What a plan made from this reader depends on: :meth:`files` and the files read beside it."""
        return [*self.files(), *self._beside.values()]

    def identity(self) -> dict[str, Any]:
        """What identifies this version of the checkpoint: its index object's size, etag or mtime."""
        return object_version(self.prefix.with_suffix(".index"))

    def data_location(self, shard: int) -> Location:
        base = self.prefix.path.rsplit("/", 1)
        name = data_file_name(base[-1], shard, self.header.num_shards)
        return Location(self.prefix.fs, f"{base[0]}/{name}" if len(base) == 2 else name)

    def shard_size(self, shard: int) -> int:
        """The size of data file ``shard`` in bytes (asked once per reader)."""
        size = self._shard_sizes.get(shard)
        if size is None:
            size = self._shard_sizes[shard] = object_size(self.data_location(shard))
        return size

    def check_in_files(self, key: str, entries: Iterable[BundleEntry]) -> None:
        """Raise :class:`CorruptCheckpointError` unless every entry's bytes lie inside its data file.

        Called before anything is read or allocated for the tensor, so a few bytes of index can
        never make warmstart read, allocate or write more than the data files hold.
        """
        for entry in entries:
            if entry.size and entry.offset + entry.size > self.shard_size(entry.shard_id):
                loc = self.data_location(entry.shard_id)
                raise CorruptCheckpointError(
                    f"{loc.url}: tensor {key!r} needs bytes {entry.offset}..{entry.offset + entry.size}, but the "
                    f"file has {self.shard_size(entry.shard_id)} bytes (truncated, or a damaged index)"
                )

    def read_entry_bytes(self, key: str, entry: BundleEntry) -> bytes:
        """The stored bytes of one (unpartitioned) entry, CRC-checked."""
        self.check_in_files(key, [entry])
        loc = self.data_location(entry.shard_id)
        data = read_range(loc, entry.offset, entry.offset + entry.size) if entry.size else b""
        if len(data) != entry.size:
            raise CorruptCheckpointError(
                f"{loc.url}: tensor {key!r} needs bytes {entry.offset}..{entry.offset + entry.size}, "
                f"but the file ends after {entry.offset + len(data)} (truncated?)"
            )
        if checksums.mask(checksums.crc32c(data)) != entry.crc32c and not _string_crc_ok(data, entry):
            raise CorruptCheckpointError(f"{loc.url}: tensor {key!r} fails its CRC32C check (data corrupted)")
        return data

    def read(self, key: str) -> np.ndarray:
        """The value of tensor ``key`` as a NumPy array (strings as an object array of bytes)."""
        import numpy as np

        try:
            record = self.records[key]
        except KeyError:
            raise InputNotFoundError(f"{self.url} has no tensor {key!r}") from None
        if not record.slices:
            return _decode(self.read_entry_bytes(key, record.entry), record, key, self.url)
        self.check_in_files(key, [entry for _, entry in record.slices])  # before the whole is allocated
        dt = dtypes.by_enum(record.entry.dtype)
        out = np.empty(record.shape, dtype=dt.numpy if dt.numpy is not None else object)
        for extent, entry in record.slices:
            region = tuple(slice(s, None if n == -1 else s + n) for s, n in extent)
            part = TensorRecord(key, record.dtype, entry.shape, entry)
            out[region] = _decode(self.read_entry_bytes(key, entry), part, key, self.url)
        return out


def _refuse_other_kinds(url: str, storage_options: dict[str, Any] | None) -> None:
    """Raise :class:`UnsupportedFormatError` when ``url`` is a file of a kind recognised but not a
    checkpoint (a Keras file, a MetaGraph, one data file): better than "no checkpoint there"."""
    loc = resolve(url, storage_options)
    what = describe_file(loc)
    if what is None:
        return
    if what.startswith("a data file"):
        hint = "pass the checkpoint's prefix (the path without .data-...)"
    else:
        hint = ("give a TF checkpoint (prefix or directory) here; Keras .keras, .weights.h5 and .h5 files are "
                "read as sources by warmstart plan/transfer/inspect and the Python API, not by the warm-start flow")
    raise UnsupportedFormatError(f"{loc.url} is {what}, not a TensorFlow checkpoint: {hint}")


def _string_crc_ok(data: bytes, entry: BundleEntry) -> bool:
    if entry.dtype != 7:
        return False
    try:
        return string_entry_crc(data, math.prod(entry.shape)) == entry.crc32c
    except ValueError:
        return False


def _decode(data: bytes, record: TensorRecord, key: str, url: str) -> np.ndarray:
    import numpy as np

    dt = dtypes.by_enum(record.entry.dtype)
    shape = record.entry.shape
    count = math.prod(shape)
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
    header, entries = _decode_index(data, url)
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


def _decode_index(data: bytes, url: str) -> tuple[BundleHeader, dict[bytes, BundleEntry]]:
    header: BundleHeader | None = None
    entries: dict[bytes, BundleEntry] = {}
    previous = None
    try:
        for key, value in read_table(data):
            if previous is not None and key <= previous:
                raise CorruptCheckpointError(f"{url}: index keys out of order at {key[:80]!r}")
            previous = key
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
    return header, entries


def _record(key: str, entry: BundleEntry, entries: dict[bytes, BundleEntry], header: BundleHeader, url: str):
    where = f"{url}: tensor {key!r}"
    dtype = _dtype_name(entry, where)
    if entry.unknown_rank or any(d < 0 for d in entry.shape):
        raise CorruptCheckpointError(f"{where} has an unknown shape {list(entry.shape)}")
    if not entry.slices:
        _check_entry(entry, entry.shape, header, where)
        return TensorRecord(key, dtype, tuple(entry.shape), entry)
    slices = []
    for s in entry.slices:
        extent = tuple((start, length) for start, length in s.extent)
        if len(extent) < len(entry.shape):  # trailing dims absent from the proto are full
            extent += ((0, -1),) * (len(entry.shape) - len(extent))
        part = entries.get(slice_key(key, extent))
        if part is None:
            raise CorruptCheckpointError(f"{where} lacks its slice {list(extent)}")
        slices.append((extent, part))
    _check_slices(entry, slices, header, where)
    return TensorRecord(key, dtype, tuple(entry.shape), entry, tuple(slices))


def _dtype_name(entry: BundleEntry, where: str) -> str:
    try:
        return dtypes.by_enum(entry.dtype).name
    except KeyError:
        raise CorruptCheckpointError(f"{where} has unknown dtype enum {entry.dtype}") from None


def _check_entry(entry: BundleEntry, shape: tuple[int, ...], header: BundleHeader, where: str) -> None:
    """An entry's size must be what its shape and dtype take, at a place a data file can hold."""
    if not 0 <= entry.shard_id < header.num_shards:
        raise CorruptCheckpointError(f"{where} is in shard {entry.shard_id} of {header.num_shards}")
    if entry.offset < 0 or entry.size < 0:
        raise CorruptCheckpointError(f"{where} has offset {entry.offset} and size {entry.size}")
    if tuple(entry.shape) != tuple(shape):
        raise CorruptCheckpointError(f"{where}: a slice of shape {list(entry.shape)} is stored for extent {list(shape)}")
    count, dt = math.prod(shape), dtypes.by_enum(entry.dtype)
    itemsize = dt.itemsize
    if itemsize is not None and count * itemsize != entry.size:
        raise CorruptCheckpointError(
            f"{where}: shape {list(shape)} of {dt.name} takes {count * itemsize} bytes, "
            f"but the index says {entry.size}"
        )
    if itemsize is None and count > entry.size:  # a string needs at least its length's byte
        raise CorruptCheckpointError(f"{where}: {count} strings cannot fit in {entry.size} bytes")


def _check_slices(entry: BundleEntry, slices, header: BundleHeader, where: str) -> None:
    """The slices of a partitioned tensor must tile its shape exactly: inside it, no overlaps, no gaps."""
    shape = entry.shape
    boxes = []
    for extent, part in slices:
        if len(extent) != len(shape) or part.slices or part.dtype != entry.dtype:
            raise CorruptCheckpointError(f"{where}: slice {list(extent)} does not fit its shape {list(shape)}")
        box = tuple((0, dim) if length == -1 else (start, start + length)
                    for (start, length), dim in zip(extent, shape))
        if any(lo < 0 or hi < lo or hi > dim for (lo, hi), dim in zip(box, shape)):
            raise CorruptCheckpointError(f"{where}: slice {list(extent)} lies outside its shape {list(shape)}")
        if any(length == -1 and start != 0 for start, length in extent):
            raise CorruptCheckpointError(f"{where}: slice {list(extent)} is malformed")
        _check_entry(part, tuple(hi - lo for lo, hi in box), header, where)
        boxes.append(box)
    if sum(math.prod(hi - lo for lo, hi in box) for box in boxes) != math.prod(shape) or _overlapping(boxes):
        raise CorruptCheckpointError(
            f"{where}: its {len(boxes)} slices do not tile its shape {list(shape)} (gaps or overlaps)")


def _overlapping(boxes: list[tuple[tuple[int, int], ...]]) -> bool:
    """True when two boxes share an element (with the volumes adding up, no overlap means no gap)."""
    import numpy as np

    if len(boxes) < 2 or not boxes[0]:
        return len(boxes) > 1
    lo = np.array([[a for a, _ in box] for box in boxes], dtype=object)
    hi = np.array([[b for _, b in box] for box in boxes], dtype=object)
    for i in range(len(boxes) - 1):
        apart = (lo[i + 1 :] >= hi[i]) | (hi[i + 1 :] <= lo[i])
        if not apart.any(axis=1).all():
            return True
    return False
