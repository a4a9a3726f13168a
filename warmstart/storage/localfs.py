"""Local files through fsspec's interface, without importing fsspec.

Importing fsspec costs a cold process about 70 ms (it imports asyncio and reads its entry points), a fifth of a
small local transfer. Local paths and ``file://`` URLs (given without storage options) resolve to
:data:`LOCAL`, which answers the filesystem calls the engine makes with the same results as fsspec's
``LocalFileSystem`` (the same paths, URLs, ``info`` fields and errors: tests/test_storage.py compares them);
any other call is handed to fsspec's own ``LocalFileSystem``, imported then.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from typing import Any

__all__ = ["LOCAL", "LocalFS", "local_path"]

_PROTOCOLS = ("file", "local")
_OPEN_OPTIONS = {"block_size", "cache_options", "encoding", "errors", "newline"}


def local_path(url: str) -> str | None:
    """The absolute POSIX path of ``url`` when fsspec would resolve it to its local filesystem (a plain path, a
    ``file://`` or ``local://`` URL, not chained), as fsspec spells it; None otherwise."""
    if "::" in url or url.startswith("data:"):
        return None
    protocol, sep, _ = url.partition("://")
    if sep and len(protocol) > 1 and protocol not in _PROTOCOLS:
        return None
    return LocalFS._strip_protocol(url)


class LocalFS:
    """The local filesystem with fsspec's ``LocalFileSystem`` interface (``auto_mkdir`` off, as fsspec's default).
    One instance, :data:`LOCAL`; equal to every other (a pickled copy too)."""

    protocol = _PROTOCOLS
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = os.fspath(path)
        for prefix in ("file://", "file:", "local://", "local:"):
            if path.startswith(prefix):
                path = path.removeprefix(prefix)
                break
        if path.startswith("/"):
            pass
        elif path.startswith("~"):
            path = os.path.expanduser(path)
        else:
            path = f"{os.getcwd()}/{'' if path == '.' else path.removeprefix('./')}"
        return path.rstrip("/") or cls.root_marker

    @classmethod
    def _parent(cls, path: str) -> str:
        return cls._strip_protocol(path).rsplit("/", 1)[0] or "/"

    def unstrip_protocol(self, name: str) -> str:
        return f"file://{self._strip_protocol(name)}"

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if set(kwargs) - _OPEN_OPTIONS:  # compression and the like: fsspec's own
            return self._fsspec().open(path, mode, **kwargs)
        text = {k: kwargs[k] for k in ("encoding", "errors", "newline") if k in kwargs}
        if "b" in mode:
            return open(self._strip_protocol(path), mode)
        return io.TextIOWrapper(open(self._strip_protocol(path), mode.replace("t", "") + "b"), **text)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return os.path.exists(self._strip_protocol(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self._strip_protocol(path))

    def isfile(self, path: str) -> bool:
        return os.path.isfile(self._strip_protocol(path))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        out = os.stat(path, follow_symlinks=False)
        link = stat.S_ISLNK(out.st_mode)
        if link:
            out = os.stat(path, follow_symlinks=True)
        kind = "directory" if stat.S_ISDIR(out.st_mode) else "file" if stat.S_ISREG(out.st_mode) else "other"
        result = {"name": path, "size": out.st_size, "type": kind, "created": getattr(out, "st_birthtime", out.st_ctime),
                  "islink": link, **{field: getattr(out, f"st_{field}") for field in
                                     ("mode", "uid", "gid", "mtime", "ino", "nlink")}}
        if link:
            result["destination"] = os.readlink(path)
        return result

    def ls(self, path: str, detail: bool = False, **kwargs: Any) -> list[Any]:
        if detail:
            return self._fsspec().ls(path, detail=True, **kwargs)
        path = self._strip_protocol(path)
        if self.info(path)["type"] != "directory":
            return [path]
        with os.scandir(path) as entries:
            return [self._strip_protocol(entry.path) for entry in entries]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with open(self._strip_protocol(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if start is not None:
                f.seek(start if start >= 0 else max(0, size + start))
            if end is None:
                return f.read()
            return f.read((end if end >= 0 else size + end) - f.tell())

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        with open(self._strip_protocol(path), "wb" if mode == "overwrite" else "xb") as f:
            f.write(value)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        os.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rm(self, path: str | list[str], recursive: bool = False, maxdepth: int | None = None) -> None:
        for p in path if isinstance(path, list) else [path]:
            p = self._strip_protocol(p)
            if os.path.isdir(p) and not os.path.islink(p):
                if not recursive:
                    raise ValueError("Cannot delete directory, set recursive=True")
                if os.path.abspath(p) == os.getcwd():
                    raise ValueError("Cannot delete current working directory")
                shutil.rmtree(p)
            else:
                os.remove(p)

    def mv(self, path1: str, path2: str, recursive: bool = True, **kwargs: Any) -> None:
        shutil.move(self._strip_protocol(path1), self._strip_protocol(path2))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if os.path.isfile(path1):
            shutil.copyfile(path1, path2)
        elif os.path.isdir(path1):
            os.makedirs(path2, exist_ok=True)
        else:
            raise FileNotFoundError(path1)

    def put_file(self, path1: str, path2: str, callback: Any = None, **kwargs: Any) -> None:
        self.cp_file(path1, path2)

    def get_file(self, path1: str, path2: Any, callback: Any = None, **kwargs: Any) -> None:
        if hasattr(path2, "write"):
            with open(self._strip_protocol(path1), "rb") as f:
                shutil.copyfileobj(f, path2)
        else:
            self.cp_file(path1, path2)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Nothing is cached locally."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._fsspec(), name)

    @staticmethod
    def _fsspec() -> Any:
        import fsspec

        return fsspec.filesystem("file")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalFS)

    def __hash__(self) -> int:
        return hash(LocalFS)

    def __reduce__(self) -> tuple[Any, ...]:
        return LocalFS, ()

    def __repr__(self) -> str:
        return "LocalFS()"


#: The local filesystem.
LOCAL = LocalFS()
