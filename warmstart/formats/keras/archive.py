"""The weights member of a ``.keras`` archive, as a file h5py can read.

Keras stores ``model.weights.h5`` uncompressed: its bytes sit in the zip at a computable offset,
so they are read in place through a window on the archive (and a tensor's absolute offset in the
archive is known). A recompressed archive's member is decompressed once into a temporary file:
h5py seeks back and forth, which a zip stream serves by decompressing from the start every time
(28.5 s against 1.2 s in place for a 414 MiB member). A compressed member is decompressed at most
once per reader (:func:`extract_member`), and only within limits: its declared size and compression
ratio are checked before a byte is inflated (a 3 MB zip declaring 3 GiB is refused at once), no more
bytes than declared are written, and the temporary directory must have room for it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

from ...errors import CorruptCheckpointError, InputLimitError, StorageError, UnsupportedFormatError, UsageError
from ...storage import COMPRESSION_RATIO, MEMBER_BYTES

__all__ = ["ARCHIVE_MEMBER", "Window", "archive_member", "check_members", "extract_member", "weights_info"]

ARCHIVE_MEMBER = "model.weights.h5"


def check_members(archive: zipfile.ZipFile, url: str) -> None:
    """Raise :class:`InputLimitError` when a member of ``archive`` declares more bytes, or a higher
    compression ratio, than the limits allow (a zip bomb): checked before anything is inflated."""
    for info in archive.infolist():
        if info.file_size > MEMBER_BYTES.value:
            raise InputLimitError(f"{url}: member {info.filename!r} declares {info.file_size:,} bytes, over the "
                                  f"limit of {MEMBER_BYTES.words()}")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 1 << 20 and \
                info.file_size > COMPRESSION_RATIO.value * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise InputLimitError(
                f"{url}: member {info.filename!r} inflates {info.compress_size:,} bytes to {info.file_size:,} "
                f"({ratio:,}:1), over the limit of {COMPRESSION_RATIO.value}:1 ({COMPRESSION_RATIO.env}): a zip bomb?")


def weights_info(archive: zipfile.ZipFile, url: str) -> zipfile.ZipInfo:
    """The weights member's entry, its archive checked (:func:`check_members`)."""
    check_members(archive, url)
    names = archive.namelist()
    if ARCHIVE_MEMBER not in names:
        raise UnsupportedFormatError(
            f"{url} holds no {ARCHIVE_MEMBER} (its weights are {', '.join(names[:20])}): save it "
            "again with Keras 3's default format")
    return archive.getinfo(ARCHIVE_MEMBER)


@contextlib.contextmanager
def archive_member(raw: Any, url: str) -> Iterator[tuple[Any, int, int]]:
    """The archive's stored (uncompressed) weights as (a file object, the offset of its first byte in the
    archive, its size). A compressed member is :func:`extract_member`'s."""
    with zipfile.ZipFile(raw) as archive:
        info = weights_info(archive, url)
        if info.compress_type != zipfile.ZIP_STORED:
            raise UsageError(f"{url}: its weights are compressed: read the copy extract_member() makes")
        start = _data_start(raw, info, url)
        yield Window(raw, start, info.file_size), start, info.file_size


def is_compressed(raw: Any, url: str) -> bool:
    """Whether the archive's weights member is compressed (it must then be extracted to be read)."""
    with zipfile.ZipFile(raw) as archive:
        return weights_info(archive, url).compress_type != zipfile.ZIP_STORED


def extract_member(raw: Any, url: str, directory: str) -> str:
    """Inflate the archive's weights member, once, into a new file in ``directory``; returns its path.
    Raises :class:`InputLimitError` (sizes, ratio), :class:`StorageError` (no room) or
    :class:`CorruptCheckpointError` (the member holds other than it declares)."""
    with zipfile.ZipFile(raw) as archive:
        info = weights_info(archive, url)
        free = shutil.disk_usage(directory).free
        if info.file_size + (256 << 20) > free:
            raise StorageError(f"{url}: its weights inflate to {info.file_size:,} bytes, but {directory} has "
                               f"{free:,} bytes free (set TMPDIR to a larger place)")
        fd, path = tempfile.mkstemp(prefix="warmstart-keras-", suffix=".weights.h5", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, archive.open(info) as member:
                left = info.file_size
                while chunk := member.read(min(16 << 20, left + 1)):
                    left -= len(chunk)
                    if left < 0:
                        raise CorruptCheckpointError(f"{url}: {ARCHIVE_MEMBER} holds more than the "
                                                     f"{info.file_size:,} bytes it declares")
                    out.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
    return path


def _data_start(raw: Any, info: zipfile.ZipInfo, url: str) -> int:
    """Where a stored member's bytes begin: after its local header (30 bytes, the name, the extra field)."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CorruptCheckpointError(f"{url}: the local header of {info.filename} is damaged")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


class Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a seekable file, as a file of their own (what h5py reads);
    ``strict``: a read past the end is an error rather than short."""

    def __init__(self, raw: Any, start: int, size: int, strict: bool = True):
        self.raw, self.start, self.size, self.pos, self.strict = raw, start, size, 0, strict

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.strict and self.pos + len(buffer) > self.size:
            # HDF5 reads past the end only when a damaged structure points there (it may then try
            # to read gigabytes); an error ends that at once
            raise OSError(f"a read of {len(buffer)} bytes at {self.pos} passes the end ({self.size} bytes)")
        n = max(0, min(len(buffer), self.size - self.pos))
        if n == 0:
            return 0
        self.raw.seek(self.start + self.pos)
        data = self.raw.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)
