"""What an HDF5 file written by Keras holds: its datasets (dtype, shape, where their bytes are) and
the names Keras recorded, read with h5py from the file's structure alone.

Keras 3 lays a file out by the model's attribute paths (``layers/dense_1/vars/0``: a layer's group is
named after its class and a count, its variables are numbered) and records each layer's own name on
its ``vars`` group. A legacy file (Keras 2 layout, which Keras 3 still writes for ``model.save("m.h5")``,
and Hugging Face's ``tf_model.h5``) lists its layers in ``layer_names`` and each layer's weights in
``weight_names``, which are the variables' names. A dataset stored contiguous and unfiltered (what
Keras writes) has a known offset: its bytes can be read with one ranged request, without h5py.
"""

from __future__ import annotations

import contextlib
import json
import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ...errors import CorruptCheckpointError
from ...storage import COMPRESSION_RATIO, MEMBER_BYTES
from .. import dtypes

__all__ = ["Dataset", "Scan", "scan"]

_MAX_ATTRIBUTE_BYTES = 1 << 16  # a layer's name, a dtype name
_COMPACT = 0  # h5d.COMPACT: a small dataset kept in its object header
_MAX_LIST_BYTES = 16 << 20  # layer_names / weight_names of a legacy file (a few KiB for BERT)
MAX_CONFIG_BYTES = 16 << 20  # a model's configuration (BERT-base: 0.1 MiB)


@dataclass(frozen=True, slots=True)
class Dataset:
    """One dataset: its path, dtype name, the numpy layout of its stored bytes, shape, stored size,
    and its offset in the object (None when it must be read through h5py)."""

    path: str
    dtype: str
    layout: str
    shape: tuple[int, ...]
    stored_bytes: int
    offset: int | None


@dataclass
class Scan:
    datasets: dict[str, Dataset]
    vars_names: dict[str, str]  # 'layers/dense' -> the layer name Keras recorded on 'layers/dense/vars'
    legacy_names: dict[str, tuple[str, str]] | None  # legacy files: dataset path -> (layer name, weight name)
    config: dict[str, Any] | None = None  # a legacy model file's model_config (a .keras archive's: its reader)


def scan(f: Any, url: str, base: int, size: int) -> Scan:
    """Scan the open h5py file ``f`` whose first byte is at ``base`` in an object of which it takes
    ``size`` bytes (``base`` -1: its bytes are not in the object, so no offsets)."""
    legacy = _legacy_root(f, url)
    if legacy is not None:
        return _scan_legacy(f, legacy, url, base, size)
    import h5py

    found: dict[str, Dataset] = {}
    vars_names: dict[str, str] = {}

    def visit(path: str, obj: Any) -> None:
        if not isinstance(path, str):  # h5py passes a name that is not UTF-8 as bytes
            raise CorruptCheckpointError(f"{url}: an object named {path!r}, which is not UTF-8 text")
        if isinstance(obj, h5py.Dataset):
            found[path] = _dataset(path, obj, url, base, size)
        elif posixpath.basename(path) == "vars" and (name := _attr(obj.attrs, "name", url)) is not None:
            vars_names[posixpath.dirname(path)] = _text(name)

    f.visititems(visit)
    foreign = [p for p in found if not re.fullmatch(r"(.+/)?vars/\d+", p)]
    if foreign or (not found and "layers" not in f and "vars" not in f):
        where = f"dataset {foreign[0]!r} is not a layer's vars/N" if foreign else "no 'layers' or 'vars' group"
        raise CorruptCheckpointError(f"{url}: an HDF5 file without Keras weights ({where}, and no layer_names list)")
    return Scan(found, vars_names, None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dataset(path: str, ds: Any, url: str, base: int, size: int) -> Dataset:
    if _attr(ds.attrs, "dtype", url) == "bfloat16":
        dtype = "bfloat16"
    else:
        try:
            dtype = dtypes.by_numpy(ds.dtype).name
        except KeyError:
            raise CorruptCheckpointError(
                f"{url}: dataset {path!r} has a dtype warmstart does not know: {ds.dtype}") from None
    shape = tuple(int(d) for d in ds.shape)
    stored = int(ds.id.get_storage_size())
    _check_declared(ds, path, math.prod(shape) * ds.dtype.itemsize, stored, url, size)
    return Dataset(path, dtype, ds.dtype.str, shape, stored, _offset(ds, shape, stored, url, base, size))


def _check_declared(ds: Any, path: str, declared: int, stored: int, url: str, size: int) -> None:
    """A dataset's declared size against what the file stores, before anything is read or allocated for it:
    contiguous, every declared byte is stored (inside the file: :func:`_offset`); chunked or filtered, it
    inflates to at most the compression-ratio limit times its stored chunks (and never past the limit of a
    decompressed member)."""
    if declared <= 0 or ds.id.get_create_plist().get_layout() == _COMPACT:
        return
    if ds.chunks is None and ds.compression is None:
        if stored != declared:
            raise CorruptCheckpointError(f"{url}: dataset {path!r} declares {declared:,} bytes but the file stores "
                                         f"{stored:,}: not what Keras writes")
        return
    ratio = COMPRESSION_RATIO.value
    if stored > size or declared > max(stored, 1 << 16) * ratio or declared > MEMBER_BYTES.value:
        raise CorruptCheckpointError(f"{url}: dataset {path!r} declares {declared:,} bytes from {stored:,} stored "
                                     f"in a file of {size if size >= 0 else '?'} bytes: over {ratio}:1 "
                                     f"({COMPRESSION_RATIO.env}), refusing to allocate it")


def _offset(ds: Any, shape: tuple[int, ...], stored: int, url: str, base: int, size: int) -> int | None:
    """The dataset's first byte in the object, for a contiguous, unfiltered, fully written dataset."""
    if base < 0 or ds.chunks is not None or ds.dtype.itemsize * math.prod(shape) != stored:
        return None
    offset = ds.id.get_offset()
    if offset is None:
        return None
    if offset < 0 or offset + stored > size:
        raise CorruptCheckpointError(
            f"{url}: dataset {ds.name.lstrip('/')!r} claims bytes {offset}..{offset + stored} of a file of {size}")
    return base + int(offset)


def _legacy_root(f: Any, url: str) -> Any | None:
    """The group of a legacy file that lists its layers: ``model_weights`` of a full model, the root
    of a weights-only file; None otherwise."""
    if "model_weights" in f and _names(f["model_weights"].attrs, "layer_names", url):
        return f["model_weights"]
    return f if _names(f.attrs, "layer_names", url) else None


def _attr(attrs: Any, key: str, url: str, limit: int = _MAX_ATTRIBUTE_BYTES) -> Any:
    """An attribute's value, or None; read only when it is small (a damaged header can declare an
    attribute of any size, which HDF5 would then allocate and read)."""
    if key not in attrs:
        return None
    aid = attrs.get_id(key)
    size = math.prod(aid.shape or ()) * aid.dtype.itemsize
    with contextlib.suppress(RuntimeError):  # h5py raises for a size of 0 (an empty list)
        size = max(size, aid.get_storage_size())
    if size > limit:
        raise CorruptCheckpointError(f"{url}: attribute {key!r} claims {size} bytes: not what Keras writes")
    return attrs[key]


def _names(attrs: Any, key: str, url: str) -> list[str]:
    """A list attribute, also when HDF5's header limit made Keras split it into ``key0``, ``key1``, ..."""
    if key in attrs:
        chunks = [_attr(attrs, key, url, _MAX_LIST_BYTES)]
    else:
        chunks, i = [], 0
        while f"{key}{i}" in attrs:
            chunks.append(_attr(attrs, f"{key}{i}", url, _MAX_LIST_BYTES))
            i += 1
    return [_text(n) for chunk in chunks for n in chunk]


def _scan_legacy(f: Any, root: Any, url: str, base: int, size: int) -> Scan:
    """Each layer's ``weight_names`` (``enc1/kernel``; Keras 2 adds ``:0``) name its variables: Keras 3
    writes them as ``variable.path``, which a Keras target's variables are named by. A model file's
    ``model_config`` (the layers' classes) comes along."""
    import h5py

    found: dict[str, Dataset] = {}
    names: dict[str, tuple[str, str]] = {}
    for layer in _names(root.attrs, "layer_names", url):
        group = root.get(layer)
        if not isinstance(group, h5py.Group):
            raise CorruptCheckpointError(f"{url}: layer {layer!r} is listed but has no group")
        for weight in _names(group.attrs, "weight_names", url):
            ds = group.get(weight)
            if not isinstance(ds, h5py.Dataset):
                raise CorruptCheckpointError(f"{url}: weight {weight!r} of layer {layer!r} is listed but missing")
            path = ds.name.lstrip("/")
            found[path] = _dataset(path, ds, url, base, size)
            names[path] = (layer, weight[:-2] if weight.endswith(":0") else weight)
    return Scan(found, {}, names, _model_config(f, url))


def _model_config(f: Any, url: str) -> dict[str, Any] | None:
    """The ``model_config`` attribute of a legacy model file (JSON), when small and readable; None otherwise
    (a weights-only file, Hugging Face's): its variables are then known by their weight names alone."""
    try:
        text = _attr(f.attrs, "model_config", url, MAX_CONFIG_BYTES)
    except CorruptCheckpointError:
        return None
    try:
        config = json.loads(_text(text)) if text is not None else None
    except (ValueError, UnicodeError, RecursionError):
        return None
    return config if isinstance(config, dict) else None
