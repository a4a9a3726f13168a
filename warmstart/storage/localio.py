"""Local-file fast path of the stream strategy: map source bytes instead of reading them, and let
the kernel copy them into the output.

Measured on this project's 2-core VM (1 GiB of 8 MiB tensors, page cache warm, `os.sync()` before
each run; see benchmarks/README.md): ``shutil.copyfile`` 0.29-0.51 s; read() into fresh buffers +
CRC + write() 1.47-1.54 s; readinto() a reused buffer + CRC + write() 0.48-2.51 s (the write of
user memory into the page cache is what varies); CRC32C over an ``mmap`` of the source +
``os.copy_file_range`` into the output 0.43-0.59 s. So a tensor copied unchanged from a local
source into a local output is checked over a read-only mapping (no copy into user memory) and
copied with ``copy_file_range``; casts still go through user memory. The output's blocks for those bytes are
allocated before the copy (:func:`reserve_space`): copying 1 GiB into allocated blocks took 0.29-0.31 s against
0.36-0.38 s into a file that grows as it is written (ext4, kernel 6.18; ``cp`` of the same file 0.36-0.40 s).

Blocks are mapped without ``MAP_POPULATE``: the CRC check's reads fault the pages in (the kernel maps them in
groups and reads ahead on its own). The 1 GiB stream's copy with the page cache warm took 0.23-0.27 s against
0.26-0.36 s with ``MAP_POPULATE`` on the threads that map ahead, cold (its pages evicted) 0.53-0.67 s against
0.66-1.33 s; ``MADV_WILLNEED`` or ``POSIX_FADV_WILLNEED`` on each block: 0.80-0.84 s cold, no better warm.

A mapping covers one read block (at most the stream chunk), so the process maps no more than
``in_flight + 1`` chunks at a time whatever the model size. A source file shorter than its index
says is refused before it is mapped (touching a mapping past the end of a file is a SIGBUS).
"""

from __future__ import annotations

import errno
import mmap
import os

from ..errors import CorruptCheckpointError, InputNotFoundError, StorageError
from .locations import Location

__all__ = ["MappedSource", "MappedBlock", "kernel_copy", "reserve_space"]

_GRANULARITY = mmap.ALLOCATIONGRANULARITY
_MAP_FLAGS = mmap.MAP_SHARED  # not MAP_POPULATE: see above

# copy_file_range cannot serve these files (another filesystem on an older kernel, a filesystem
# without support, no such syscall): fall back to writing the mapped bytes.
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.ETXTBSY}


class MappedBlock:
    """``view``: the bytes ``[start, end)`` of a source file, mapped read-only; ``fd`` the file."""

    __slots__ = ("_map", "view", "fd", "start")

    def __init__(self, fd: int, start: int, end: int):
        self.fd = fd
        self.start = start
        base = start - start % _GRANULARITY
        # Filled as the CRC check reads it (page faults; the kernel reads ahead from disk): cheaper than
        # MAP_POPULATE on the thread that maps ahead (see the module's notes).
        self._map = mmap.mmap(fd, end - base, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base)
        self.view = memoryview(self._map)[start - base :]

    def __len__(self) -> int:
        return len(self.view)

    def close(self) -> None:
        self.view.release()
        try:
            self._map.close()
        except BufferError:  # a slice is still referenced somewhere: the mapping goes when it does
            pass


class MappedSource:
    """Open data files of a local checkpoint (one descriptor per shard), mapped block by block."""

    def __init__(self):
        self._files: dict[str, tuple[int, int]] = {}  # path -> (fd, size)

    def block(self, loc: Location, start: int, end: int) -> MappedBlock:
        fd, size = self._open(loc)
        if end > size:
            raise CorruptCheckpointError(f"{loc.url}: bytes {start}..{end} are past its end at {size} (truncated?)")
        return MappedBlock(fd, start, end)

    def _open(self, loc: Location) -> tuple[int, int]:
        found = self._files.get(loc.path)
        if found is None:
            try:
                fd = os.open(loc.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise InputNotFoundError(f"{loc.url} does not exist") from None
            except OSError as exc:
                raise StorageError(f"cannot open {loc.url}: {exc}") from None
            found = self._files[loc.path] = (fd, os.fstat(fd).st_size)
        return found

    def close(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self) -> "MappedSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kernel_copy(src_fd: int, dst_fd: int, offset: int, size: int) -> int:
    """Append ``size`` bytes of ``src_fd`` at ``offset`` to ``dst_fd`` (at its file position) with
    ``copy_file_range``. Returns how many bytes were copied: fewer than ``size`` (0 included) when
    the kernel cannot copy between these files, and the caller writes the rest itself."""
    copy = getattr(os, "copy_file_range", None)
    done = 0
    if copy is None:
        return 0
    while done < size:
        try:
            n = copy(src_fd, dst_fd, size - done, offset + done)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                return done
            raise
        if n == 0:  # end of the source file: the caller's own write reports it
            return done
        done += n
    return done


def reserve_space(fd: int, offset: int, size: int) -> bool:
    """Allocate the blocks of bytes ``[offset, offset + size)`` of the local file ``fd`` before they are written
    (``posix_fallocate``: the file's size grows to cover them, so the writer truncates it to what it wrote when
    done). Returns False where the platform or filesystem cannot (nothing changed, the copy goes on as without);
    raises ``OSError`` for a real failure, ``ENOSPC`` included: a full disk is found before any byte is copied."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None or size <= 0:
        return False
    try:
        allocate(fd, offset, size)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True
