"""Keras weights files, read without Keras: ``.weights.h5``, the weights inside a ``.keras`` archive,
sharded ``.weights.json`` indexes with their ``*_NNNNN.weights.h5`` shards, and legacy ``.h5``.

The reader knows each dataset by its path in the file (the key Keras' own ``load_weights`` matches by:
``layers/dense_1/vars/0``), the layer names Keras recorded on each layer's ``vars`` group, a legacy
file's weight names, and the model's configuration where the file holds one (a ``.keras`` archive's
``config.json``, a legacy model file's ``model_config``): the facts :mod:`warmstart.tables` names the
variables by (an inserted layer shifts the class counts in the file's paths, never the names).

The structure is read when the reader opens; from object storage through small cached blocks
(16 KiB: a BERT-base file's structure is 178 requests and 2.9 MiB from S3, 0.7% of the file; 64 KiB
blocks cost 131 requests and 8.5 MiB). A tensor Keras stored contiguous, which is every tensor
Keras writes, is then read as one ranged request of exactly its bytes; any other through h5py.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import CorruptCheckpointError, InputNotFoundError, StorageError, UsageError, WarmStartError
from ...storage import Location, is_transient, kernel_copy, object_size, object_version, read_bytes, read_range, resolve
from .. import dtypes
from ..interface import ReaderKind, StoredTensor
from .archive import Window, archive_member, extract_member, is_compressed
from .isolated import isolated
from .layout import MAX_CONFIG_BYTES, Scan, scan

if TYPE_CHECKING:
    import numpy as np

__all__ = ["KerasWeightsReader", "KerasRecord", "keras_versions"]

_META_BLOCK = 16 << 10  # block size for reading an object's HDF5 structure (the figures above)
_MAX_SHARD_INDEX_BYTES = 16 << 20  # Keras writes a few KiB; never read a huge "index"
_STRUCTURE_FORMAT = "warmstart.keras-structure.v2"
_CONFIG = "config.json"
_DAMAGED = (RuntimeError, ValueError, TypeError, UnicodeError, OverflowError, IndexError)
_SHARD_NAME = re.compile(r"[^/\\]+\.weights\.h5")


@dataclass(frozen=True, slots=True)
class KerasRecord(StoredTensor):
    """One dataset: its path in the file (the key), dtype name, shape, and where its bytes are
    (``offset`` in file ``shard`` of the reader's ``shards``, stored as ``layout``)."""

    stored_bytes: int
    offset: int | None = None
    layout: str = ""
    shard: int = 0


class KerasWeightsReader:
    """A Keras weights file opened for reading (a :class:`~warmstart.formats.TensorReader`).

    ``groups``: the layer name Keras recorded for each layer's group (``layers/dense_1`` -> ``enc2``);
    ``legacy``: a legacy file's (layer name, weight name) of each dataset, in the file's layer order;
    ``config``: the model's configuration when the file holds one (None otherwise).

    Raises :class:`InputNotFoundError` when there is no file, :class:`UnsupportedFormatError` for a
    ``.keras`` archive without ``model.weights.h5`` (weights saved as ``.npz``), and
    :class:`CorruptCheckpointError` when the file is not the HDF5 Keras writes.
    """

    reader_kind: ClassVar[ReaderKind] = "keras-weights"

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None,
                 structure: dict[str, Any] | None = None, versions: dict[str, dict[str, Any]] | None = None):
        self.prefix = resolve(url, storage_options)  # the file itself (named like a checkpoint's prefix)
        self.url = self.prefix.url
        self.archive = self.prefix.path.endswith(".keras")
        self.sharded = self.prefix.path.endswith(".weights.json")
        self.shards: list[Location] = _shard_files(self.prefix) if self.sharded else [self.prefix]
        for f in self.shards:
            object_size(f)  # a regular file: a FIFO or a device would block or never end (nothing is opened)
        self._extracted = _extracted_copy(self.prefix) if self.archive else None  # a compressed member, inflated once
        if self._extracted is not None:
            weakref.finalize(self, _remove, self._extracted)
            self.shards = [resolve(self._extracted)]
        self._in_archive = self.archive and self._extracted is None  # read in place, through a window
        self._options = storage_options
        #: The versions of its files when their structure was read, by URL (what a plan pins).
        self.versions: dict[str, dict[str, Any]] = dict(versions or {})
        if isinstance(structure, dict) and structure.get("format") == _STRUCTURE_FORMAT:  # a cache of this version
            self.records: dict[str, KerasRecord] = _from_structure(structure, self.url, len(self.shards))
            self.groups, self.legacy, self.config = _names_from_structure(structure, self.url)
            return
        self.versions = keras_versions(self.prefix)  # asked before reading: a later change shows
        import h5py  # noqa: F401 - imported once here, not again in each forked child that reads a structure

        scans = [isolated(_scan, s.url, storage_options, self._in_archive, what=s.url) for s in self.shards]
        self.records = _records(scans, self.url)
        self.groups = {group: name for s in scans for group, name in s.vars_names.items()}
        self.legacy = next((s.legacy_names for s in scans if s.legacy_names is not None), None)
        self.config = _archive_config(self.prefix) if self.archive else next(
            (s.config for s in scans if s.config is not None), None)

    def structure(self) -> dict[str, Any]:
        """The records and names as JSON, to cache: ``KerasWeightsReader(url, options, structure=...)``
        reads no HDF5 structure again (a document of an older format is read again from the file)."""
        legacy = None if self.legacy is None else [[k, *v] for k, v in self.legacy.items()]
        return {"format": _STRUCTURE_FORMAT, "records": [
            {**asdict(r), "shape": list(r.shape)} for r in self.records.values()],
            "groups": self.groups, "legacy": legacy, "config": self.config}

    def __repr__(self) -> str:
        return f"KerasWeightsReader({self.url!r}, {len(self.records)} tensors)"

    def files(self) -> list[Location]:
        return [self.prefix, *self.shards] if self.sharded else [self.prefix]

    def identity(self) -> dict[str, dict[str, Any]]:
        """The versions of its files, by URL, as they were when its structure was read."""
        return self.versions or keras_versions(self.prefix)

    def copy_to(self, local_path: str) -> None:
        """Write the weights file to ``local_path``: the file itself, or the archive's weights member."""
        loc = self.prefix
        if self.sharded:
            raise UsageError(f"{self.url} is a sharded Keras weights file: it cannot be a template to write into; "
                             "give the model's .keras file or a single .weights.h5")
        if not self._in_archive:
            source = self.shards[0]  # the file, or the archive's inflated weights
            source.fs.get_file(source.path, local_path)
            return
        with loc.fs.open(loc.path, "rb") as raw, archive_member(raw, self.url) as (member, base, size), \
                open(local_path, "wb") as out:
            # a stored member of a local archive: copied file to file by the kernel
            done = kernel_copy(raw.fileno(), out.fileno(), base, size) if loc.is_local and base >= 0 else 0
            member.seek(done)
            for start in range(done, size, 16 << 20):
                out.write(member.read(min(16 << 20, size - start)))

    def read(self, key: str) -> np.ndarray:
        record = self.records.get(key)
        if record is None:
            raise InputNotFoundError(f"{self.url} has no tensor {key!r}")
        value = self._read_range(record) if record.offset is not None else self._read_h5(record)
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        if record.dtype == "bfloat16":
            value = value.view(dtypes.by_name("bfloat16").numpy)
        return value.reshape(record.shape)

    def _read_range(self, record: KerasRecord) -> np.ndarray:
        import numpy as np

        loc = self.shards[record.shard]
        data = read_range(loc, record.offset, record.offset + record.stored_bytes)
        if len(data) != record.stored_bytes:
            raise CorruptCheckpointError(
                f"{loc.url}: {record.key!r} is cut short ({len(data)} of {record.stored_bytes} bytes)")
        return np.frombuffer(data, dtype=np.dtype(record.layout))

    def _read_h5(self, record: KerasRecord) -> np.ndarray:
        url = self.shards[record.shard].url
        return isolated(_read_dataset, url, self._options, self._in_archive, record.key, what=url)


def _scan(url: str, storage_options: dict[str, Any] | None, archive: bool) -> Scan:
    loc = resolve(url, storage_options)
    with _open_h5(loc, archive, metadata=True) as (f, base, size):
        return scan(f, loc.url, base, size)


def _read_dataset(url: str, storage_options: dict[str, Any] | None, archive: bool, key: str) -> np.ndarray:
    import numpy as np

    loc = resolve(url, storage_options)
    with _open_h5(loc, archive, metadata=False) as (f, _, _):
        try:
            return np.asarray(f[key][()])
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptCheckpointError(f"{loc.url}: cannot read {key!r}: {exc}") from None


@contextlib.contextmanager
def _open_h5(loc: Location, archive: bool, metadata: bool) -> Iterator[tuple[Any, int, int]]:
    """The HDF5 file at ``loc`` (or in its archive) open with h5py, its first byte's offset in the
    object and its size; ``metadata``: read through small cached blocks (the structure only)."""
    import h5py

    options = {"block_size": _META_BLOCK, "cache_type": "blockcache"} if metadata and not loc.is_local else {}
    with _read_errors(loc), loc.fs.open(loc.path, "rb", **options) as raw, \
            _member(raw, loc.url, archive) as (member, base, size), h5py.File(member, "r") as f:
        yield f, base, size


def _extracted_copy(loc: Location) -> str | None:
    """A local copy of a ``.keras`` archive's weights when the archive compresses them (its path), else None."""
    with _read_errors(loc), loc.fs.open(loc.path, "rb") as raw:
        if not is_compressed(raw, loc.url):
            return None
        return extract_member(raw, loc.url, tempfile.gettempdir())


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def _read_errors(loc: Location) -> Iterator[None]:
    """What reading a Keras file raises, as warmstart's errors."""
    try:
        yield
    except WarmStartError:
        raise
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except (zipfile.BadZipFile, KeyError, zlib.error, EOFError) as exc:  # a damaged archive or compressed member
        raise CorruptCheckpointError(f"{loc.url}: not a Keras archive with model.weights.h5: {exc}") from None
    except OSError as exc:
        if is_transient(exc):
            raise StorageError(f"cannot read {loc.url}: {exc}", True) from None
        raise CorruptCheckpointError(f"{loc.url}: not a Keras weights file (HDF5): {exc}") from None
    except _DAMAGED as exc:  # what h5py raises for a damaged structure (tests/test_keras_files.py)
        raise CorruptCheckpointError(f"{loc.url}: a damaged HDF5 structure ({type(exc).__name__}: {exc})") from None


@contextlib.contextmanager
def _member(raw: Any, url: str, archive: bool) -> Iterator[tuple[Any, int, int]]:
    if archive:
        with archive_member(raw, url) as member:
            yield member
        return
    size = raw.seek(0, 2)
    yield Window(raw, 0, size), 0, size


def _records(scans: list[Scan], url: str) -> dict[str, KerasRecord]:
    """One record per dataset of every shard (Keras records a layer's name in the shard that first holds
    its group: the names are gathered over every shard)."""
    found: dict[str, KerasRecord] = {}
    for shard, s in enumerate(scans):
        for path, d in s.datasets.items():
            if path in found:
                raise CorruptCheckpointError(f"{url}: dataset {path!r} is in two shards")
            found[path] = KerasRecord(path, d.dtype, d.shape, d.stored_bytes, d.offset, d.layout, shard)
    return found


def _archive_config(loc: Location) -> dict[str, Any] | None:
    """A ``.keras`` archive's ``config.json`` (the model's layers and their classes); None when it has none or
    one larger than a model's (its variables are then named without their roles). Raises
    :class:`CorruptCheckpointError` when it is damaged."""
    try:
        with loc.fs.open(loc.path, "rb") as raw, zipfile.ZipFile(raw) as archive:
            if _CONFIG not in archive.namelist():
                return None
            info = archive.getinfo(_CONFIG)
            if info.file_size > MAX_CONFIG_BYTES:
                return None
            config = json.loads(archive.read(info))
    except (ValueError, UnicodeError, RecursionError, EOFError, NotImplementedError, RuntimeError, zlib.error,
            zipfile.BadZipFile) as exc:  # RuntimeError: an encrypted member
        raise CorruptCheckpointError(f"{loc.url}: its {_CONFIG} is damaged ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise StorageError(f"cannot read {loc.url}: {exc}", is_transient(exc)) from None
    return config if isinstance(config, dict) else None


def _names_from_structure(doc: dict[str, Any], url: str) -> tuple[dict[str, str], dict[str, tuple[str, str]] | None,
                                                                 dict[str, Any] | None]:
    try:
        groups = {str(k): str(v) for k, v in doc["groups"].items()}
        legacy = None if doc["legacy"] is None else {str(k): (str(a), str(b)) for k, a, b in doc["legacy"]}
        config = doc["config"]
        if config is not None and not isinstance(config, dict):
            raise TypeError("config is not a mapping")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(
            f"the cached structure of {url} is damaged ({exc}): remove it from the cache") from None
    return groups, legacy, config


def keras_versions(loc: Location) -> dict[str, dict[str, Any]]:
    """The version of a Keras file and, for a sharded ``.weights.json``, of each shard (whose index text need
    not change when its shards are written again), by URL (:func:`~warmstart.storage.object_version`)."""
    files = [loc, *_shard_files(loc)] if loc.path.endswith(".weights.json") else [loc]
    return {f.url: object_version(f) for f in files}


def _from_structure(doc: dict[str, Any], url: str, shards: int) -> dict[str, KerasRecord]:
    try:
        if doc.get("format") != _STRUCTURE_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        records = [KerasRecord(**{**r, "shape": tuple(int(d) for d in r["shape"])}) for r in doc["records"]]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(
            f"the cached structure of {url} is damaged ({exc}): remove it from the cache") from None
    if any(not 0 <= r.shard < shards for r in records):
        raise CorruptCheckpointError(f"the cached structure of {url} names shards it does not have: remove it")
    return {r.key: r for r in records}


def _shard_files(index: Location) -> list[Location]:
    """The shards a ``.weights.json`` index names, each a file beside it."""
    if object_size(index) > _MAX_SHARD_INDEX_BYTES:
        raise CorruptCheckpointError(f"{index.url} is over {_MAX_SHARD_INDEX_BYTES} bytes: not a Keras shard index")
    try:
        weight_map = json.loads(read_bytes(index))["weight_map"]
        # Keras writes a group in one shard as a name, in several as a list of names
        names = sorted({str(n) for files in weight_map.values() for n in ([files] if isinstance(files, str) else files)})
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptCheckpointError(f"{index.url}: not a Keras shard index (a 'weight_map' of shard lists): "
                                     f"{type(exc).__name__}: {exc}") from None
    outside = [n for n in names if not _SHARD_NAME.fullmatch(n) or n.startswith("..")]
    if outside:
        raise CorruptCheckpointError(
            f"{index.url} names a shard that is not a .weights.h5 file beside it: {outside[0]!r}")
    shards = [index.parent.child(n) for n in names]
    if index.is_local:  # a shard beside the index may still be a symlink to anywhere: refused
        home = os.path.dirname(os.path.realpath(index.path))
        away = [s for s in shards if os.path.dirname(os.path.realpath(s.path)) != home]
        if away:
            raise CorruptCheckpointError(f"{index.url}: shard {posixpath.basename(away[0].path)!r} is a symlink "
                                         "to a file outside its directory: refusing to follow it")
    return shards
