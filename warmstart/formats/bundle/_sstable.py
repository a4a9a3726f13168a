"""The LevelDB-style table ("SSTable") that holds a checkpoint's ``.index``.

Layout: data blocks, each followed by a type byte and a masked CRC32C;
an empty metaindex block; an index block; a 48-byte footer ending in a magic number.
The reader verifies every block's CRC; the writer produces what TF writes (no compression).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from . import checksums
from ._protos import read_varint, write_varint

__all__ = ["read_table", "TableWriter", "TableFormatError"]

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5


class TableFormatError(ValueError):
    """The bytes are not a valid table; the message says where."""


def _block_handle(buf: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return offset, size, pos


def _read_block(data: memoryview, offset: int, size: int, what: str) -> memoryview:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(data):
        raise TableFormatError(f"{what} at bytes {offset}..{end} lies past the end of the file ({len(data)} bytes)")
    block = data[offset : offset + size]
    block_type = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    actual = checksums.mask(checksums.crc32c(bytes(data[offset : offset + size + 1])))
    if stored != actual:
        raise TableFormatError(f"{what} at byte {offset}: checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")
    if block_type != 0:
        raise TableFormatError(f"{what} at byte {offset}: compression type {block_type} is not supported (TF writes none)")
    return block


def _block_entries(block: memoryview, what: str) -> Iterator[tuple[bytes, memoryview]]:
    if len(block) < 4:
        raise TableFormatError(f"{what}: block of {len(block)} bytes is too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TableFormatError(f"{what}: {num_restarts} restart points do not fit in {len(block)} bytes")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise TableFormatError(f"{what}: malformed entry at block offset {pos}")
        key = key[:shared] + bytes(block[pos : pos + unshared])
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_table(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """Yield (key, value) pairs of a whole table held in memory, in key order.

    Raises :class:`TableFormatError` on a bad magic, a truncated file or a checksum mismatch.
    """
    view = memoryview(data)
    if len(view) < FOOTER_SIZE:
        raise TableFormatError(f"file of {len(view)} bytes is shorter than the {FOOTER_SIZE}-byte footer")
    footer = view[len(view) - FOOTER_SIZE :]
    lo, hi = struct.unpack_from("<II", footer, 40)
    if (hi << 32 | lo) != MAGIC:
        raise TableFormatError("bad magic number in footer: not a checkpoint index (or truncated)")
    try:
        _, _, pos = _block_handle(footer, 0)  # metaindex: unused
        index_offset, index_size, _ = _block_handle(footer, pos)
    except ValueError as exc:
        raise TableFormatError(f"footer: {exc}") from None
    index = _read_block(view, index_offset, index_size, "index block")
    for _, handle in _block_entries(index, "index block"):
        offset, size, _ = _block_handle(handle, 0)
        block = _read_block(view, offset, size, "data block")
        yield from _block_entries(block, f"data block at byte {offset}")


class TableWriter:
    """Build a table from keys added in strictly increasing bytewise order; ``finish()`` returns its bytes."""

    def __init__(self, block_size: int = 256 * 1024, restart_interval: int = 16):
        self._block_size = block_size
        self._restart_interval = restart_interval
        self._out = bytearray()
        self._index: list[tuple[bytes, bytes]] = []
        self._last_key: bytes | None = None
        self._block = _BlockBuilder(restart_interval)

    def add(self, key: bytes, value: bytes) -> None:
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"keys must be added in increasing order: {key!r} after {self._last_key!r}")
        self._block.add(key, value)
        self._last_key = key
        if self._block.size_estimate() >= self._block_size:
            self._flush()

    def _write_block(self, contents: bytes) -> bytes:
        handle = write_varint(len(self._out)) + write_varint(len(contents))
        trailer = b"\x00"
        crc = checksums.mask(checksums.crc32c(contents + trailer))
        self._out += contents + trailer + struct.pack("<I", crc)
        return handle

    def _flush(self) -> None:
        if self._block.empty():
            return
        handle = self._write_block(self._block.finish())
        # The index key only has to be >= the block's last key and < the next block's first key;
        # the last key itself is always valid (TF shortens it, which is an optimization only).
        self._index.append((self._last_key, handle))
        self._block = _BlockBuilder(self._restart_interval)

    def finish(self) -> bytes:
        self._flush()
        metaindex = self._write_block(_BlockBuilder(self._restart_interval).finish())
        index_builder = _BlockBuilder(1)
        for key, handle in self._index:
            index_builder.add(key, handle)
        index = self._write_block(index_builder.finish())
        footer = (metaindex + index).ljust(40, b"\x00") + struct.pack("<II", MAGIC & 0xFFFFFFFF, MAGIC >> 32)
        self._out += footer
        return bytes(self._out)


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self._interval = restart_interval
        self._buf = bytearray()
        self._restarts = [0]
        self._count = 0
        self._last = b""

    def empty(self) -> bool:
        return not self._buf

    def size_estimate(self) -> int:
        return len(self._buf) + 4 * len(self._restarts) + 4

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self._count < self._interval:
            limit = min(len(key), len(self._last))
            while shared < limit and key[shared] == self._last[shared]:
                shared += 1
        else:
            self._restarts.append(len(self._buf))
            self._count = 0
        self._buf += write_varint(shared) + write_varint(len(key) - shared) + write_varint(len(value))
        self._buf += key[shared:] + value
        self._last = key
        self._count += 1

    def finish(self) -> bytes:
        tail = b"".join(struct.pack("<I", r) for r in self._restarts)
        return bytes(self._buf) + tail + struct.pack("<I", len(self._restarts))
