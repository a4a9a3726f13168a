"""Keras weights (``.weights.h5``, ``model.weights.h5`` inside a ``.keras`` zip, legacy ``.h5``), read with h5py.

Keras lays the file out by the model's attribute paths (``layers/dense_1/vars/0``: a layer's group is
named after its class and a count, its variables are numbered), and since Keras 3.x it records each
layer's own name on its ``vars`` group. A variable is named here by those layer names and its number
(``enc2/vars/0``), which a Keras model's table gives each variable as its ``weights_path``: an
inserted layer shifts the class counts in the file, never the names. Without recorded names (older
files) the file's own path is the name, flagged positional. Optimizer state keeps its file path
(``optimizer/vars/3``), which the default excludes leave out. A legacy ``.h5`` file (Keras 2 layout,
which Keras 3 still writes for ``model.save("m.h5")``) lists each layer's weight names, which are
the variables' names (``enc1/kernel``).

Metadata is read when the reader opens; reads go through one handle kept open (``close()``, or when
the reader is collected), each tensor read by h5py (from object storage: ranged requests through
fsspec's file cache, not merged byte ranges).
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
import shutil
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import CorruptCheckpointError, InputNotFoundError, StorageError, UnsupportedFormatError
from ...storage import Location, is_transient, object_identity, resolve
from .. import dtypes
from ..interface import StoredTensor

__all__ = ["KerasWeightsReader", "KerasRecord", "KERAS_SUFFIXES", "is_keras_file"]

KERAS_SUFFIXES = (".h5", ".keras")  # .weights.h5 (Keras 3), .h5 (legacy Keras 2 layout), .keras
_ARCHIVE_MEMBER = "model.weights.h5"


def is_keras_file(url: str) -> bool:
    return url.split("?", 1)[0].rstrip("/").endswith(KERAS_SUFFIXES)


@dataclass(frozen=True, slots=True)
class KerasRecord(StoredTensor):
    """One dataset: its path in the file (the key), dtype name, shape, and the name by layer names."""

    name: str
    positional: bool
    stored_bytes: int


class KerasWeightsReader:
    """A Keras weights file opened for reading (a :class:`~warmstart.formats.TensorReader`).

    Raises :class:`InputNotFoundError` when there is no file, :class:`UnsupportedFormatError` for a
    ``.keras`` archive without ``model.weights.h5`` (weights saved as ``.npz``), and
    :class:`CorruptCheckpointError` when the file is not the HDF5 Keras writes.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.prefix = resolve(url, storage_options)  # the file itself (named like a checkpoint's prefix)
        self.url = self.prefix.url
        self.archive = self.prefix.path.endswith(".keras")
        self._reading: Any = None  # the file kept open for reads (h5py parses its structure once)
        with self._h5() as f:
            self.records: dict[str, KerasRecord] = _records(f, self.url)

    def __repr__(self) -> str:
        return f"KerasWeightsReader({self.url!r}, {len(self.records)} tensors)"

    def files(self) -> list[Location]:
        return [self.prefix]

    def identity(self) -> dict[str, Any]:
        return object_identity(self.prefix)

    def copy_to(self, local_path: str) -> None:
        """Write the weights file to ``local_path``: the file itself, or the archive's weights member."""
        loc = self.prefix
        if not self.archive:
            loc.fs.get_file(loc.path, local_path)
            return
        with loc.fs.open(loc.path, "rb") as raw, self._member(raw) as member, open(local_path, "wb") as out:
            member.seek(0)
            shutil.copyfileobj(member, out, 16 << 20)

    def read(self, key: str) -> np.ndarray:
        record = self.records.get(key)
        if record is None:
            raise InputNotFoundError(f"{self.url} has no tensor {key!r}")
        try:
            data = self._open_for_reads()[key][()]
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptCheckpointError(f"{self.url}: cannot read {key!r}: {exc}") from None
        value = np.asarray(data)
        if record.dtype == "bfloat16":
            value = value.view(dtypes.by_name("bfloat16").numpy)
        return value.reshape(record.shape)

    def close(self) -> None:
        """Close the file kept open for reads (also done when the reader is collected)."""
        if self._reading is not None:
            self._reading[1]()
            self._reading = None

    def _open_for_reads(self) -> Any:
        if self._reading is None:
            stack = contextlib.ExitStack()
            handle = stack.enter_context(self._h5())
            self._reading = (handle, weakref.finalize(self, stack.close))
        return self._reading[0]

    @contextlib.contextmanager
    def _h5(self) -> Iterator[Any]:
        import h5py

        loc = self.prefix
        try:
            with loc.fs.open(loc.path, "rb") as raw, self._member(raw) as member, h5py.File(member, "r") as f:
                yield f
        except FileNotFoundError:
            raise InputNotFoundError(f"{self.url} does not exist") from None
        except (zipfile.BadZipFile, KeyError) as exc:
            raise CorruptCheckpointError(f"{self.url}: not a Keras archive with {_ARCHIVE_MEMBER}: {exc}") from None
        except OSError as exc:
            if is_transient(exc):
                raise StorageError(f"cannot read {self.url}: {exc}", True) from None
            raise CorruptCheckpointError(f"{self.url}: not a Keras weights file (HDF5): {exc}") from None

    @contextlib.contextmanager
    def _member(self, raw: Any) -> Iterator[Any]:
        if not self.archive:
            yield raw
            return
        with zipfile.ZipFile(raw) as archive:
            names = archive.namelist()
            if _ARCHIVE_MEMBER not in names:
                raise UnsupportedFormatError(
                    f"{self.url} holds no {_ARCHIVE_MEMBER} (its weights are {', '.join(names)}): save it "
                    "again with Keras 3's default format")
            info = archive.getinfo(_ARCHIVE_MEMBER)
            if info.compress_type == zipfile.ZIP_STORED:  # as Keras writes it: read in place
                yield _Window(raw, _data_start(raw, info, self.url), info.file_size)
                return
            with tempfile.TemporaryFile() as copy, archive.open(info) as member:
                # compressed (re-zipped by hand): h5py seeks back and forth, which a zip stream
                # serves by decompressing from the start every time; decompress once instead
                shutil.copyfileobj(member, copy, 16 << 20)
                copy.seek(0)
                yield copy


def _data_start(raw: Any, info: zipfile.ZipInfo, url: str) -> int:
    """Where a stored member's bytes begin: after its local header (30 bytes, the name, the extra field)."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CorruptCheckpointError(f"{url}: the local header of {info.filename} is damaged")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


class _Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a seekable file, as a file of their own (what h5py reads)."""

    def __init__(self, raw: Any, start: int, size: int):
        self.raw, self.start, self.size, self.pos = raw, start, size, 0

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
        n = max(0, min(len(buffer), self.size - self.pos))
        if n == 0:
            return 0
        self.raw.seek(self.start + self.pos)
        data = self.raw.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _records(f: Any, url: str) -> dict[str, KerasRecord]:
    import h5py

    legacy = _legacy_root(f)
    if legacy is not None:
        return _legacy_records(f, legacy, url)
    found: dict[str, KerasRecord] = {}

    def visit(path: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[path] = _record(f, path, obj, url)

    f.visititems(visit)
    foreign = [p for p in found if not re.fullmatch(r"(.+/)?vars/\d+", p)]
    if foreign or (not found and "layers" not in f and "vars" not in f):
        where = f"dataset {foreign[0]!r} is not a layer's vars/N" if foreign else "no 'layers' or 'vars' group"
        raise CorruptCheckpointError(f"{url}: an HDF5 file without Keras weights ({where}, and no layer_names list)")
    return found


def _legacy_root(f: Any) -> Any | None:
    """The group of a legacy (Keras 2 layout) file that lists its layers: ``model_weights`` of a full
    model, the root of a weights-only file (Hugging Face's ``tf_model.h5`` too); None otherwise."""
    if "model_weights" in f and _names(f["model_weights"].attrs, "layer_names"):
        return f["model_weights"]
    return f if _names(f.attrs, "layer_names") else None


def _names(attrs: Any, key: str) -> list[str]:
    """A list attribute, also when HDF5's header limit made Keras split it into ``key0``, ``key1``, ..."""
    if key in attrs:
        chunks = [attrs[key]]
    else:
        chunks, i = [], 0
        while f"{key}{i}" in attrs:
            chunks.append(attrs[f"{key}{i}"])
            i += 1
    return [n.decode() if isinstance(n, bytes) else str(n) for chunk in chunks for n in chunk]


def _legacy_records(f: Any, root: Any, url: str) -> dict[str, KerasRecord]:
    """Each layer's ``weight_names`` (``enc1/kernel``; Keras 2 adds ``:0``) name its variables: Keras 3
    writes them as ``variable.path``, which a Keras target's variables are named by."""
    found: dict[str, KerasRecord] = {}
    for layer in _names(root.attrs, "layer_names"):
        group = root.get(layer)
        if group is None:
            raise CorruptCheckpointError(f"{url}: layer {layer!r} is listed but has no group")
        for weight in _names(group.attrs, "weight_names"):
            ds = group.get(weight)
            if ds is None:
                raise CorruptCheckpointError(f"{url}: weight {weight!r} of layer {layer!r} is listed but missing")
            path = ds.name.lstrip("/")
            name = weight[:-2] if weight.endswith(":0") else weight
            found[path] = _record(f, path, ds, url, (name, False))
    return found


def _record(f: Any, path: str, ds: Any, url: str, named: tuple[str, bool] | None = None) -> KerasRecord:
    if ds.attrs.get("dtype") == "bfloat16":
        dtype = "bfloat16"
    else:
        try:
            dtype = dtypes.by_numpy(ds.dtype).name
        except KeyError:
            raise CorruptCheckpointError(f"{url}: dataset {path!r} has a dtype warmstart does not know: {ds.dtype}") from None
    name, positional = named or _layer_name(f, path)
    shape = tuple(int(d) for d in ds.shape)
    return KerasRecord(path, dtype, shape, name, positional, int(ds.id.get_storage_size()))


def _layer_name(f: Any, path: str) -> tuple[str, bool]:
    """``layers/block/a/vars/0`` -> (``blk/dense/vars/0``, counted?) from the names Keras recorded on
    each ``vars`` group along the way; the file path itself (positional) where a name is missing."""
    parts = path.split("/")
    if parts[0] == "optimizer" or len(parts) < 2 or parts[-2] != "vars":
        return path, parts[0] != "optimizer"
    chain, counted = [], False
    for depth in range(1, len(parts) - 1):
        group = "/".join(parts[:depth])
        name = f[f"{group}/vars"].attrs.get("name") if f"{group}/vars" in f else None
        if name is None:
            if depth == len(parts) - 2:  # the variable's own layer has no recorded name
                return path, True
            continue
        name = name.decode() if isinstance(name, bytes) else str(name)
        chain.append(name)
        base = re.sub(r"_\d+$", "", posixpath.basename(group))
        counted = counted or re.fullmatch(re.escape(base) + r"(_\d+)?", name) is not None
    return f"{'/'.join(chain)}/vars/{parts[-1]}", counted
