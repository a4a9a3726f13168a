"""A local cache of remote checkpoints: the index first, then only the tensors a plan needs.

A Keras weights file is cached as its structure (names, shapes, byte offsets); its tensors are not
copied, since the transfer reads each by its byte range; neither are a local source's. The cache is
bounded (size and age, least recently used first) and ``warmstart cache prune`` trims it by hand.

Entries are keyed by the source's resolved URL and the identity of its ``.index`` object
(size plus etag/generation/mtime), so a re-run against an unchanged source downloads nothing,
and a new checkpoint at the same URL is fetched anew. Cached tensor sets are sparse checkpoints
(real tensor bundles holding only the selected tensors, under their original keys).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputNotFoundError
from .formats.bundle import OBJECT_GRAPH_KEY, BundleReader, BundleWriter
from .formats.keras import KerasWeightsReader, is_keras_file, keras_versions
from .formats import resolve_checkpoint
from .storage import INDEX_BYTES, Location, object_version, read_bytes, resolve
from .strategies import DEFAULT_CHUNK_BYTES, write_subset
from .tables import VariableTable, checkpoint_table

if TYPE_CHECKING:
    from .planning import ParsedRules, PinnedInput, Plan, Report

__all__ = ["CachedIndex", "CachedTensors", "CacheEntry", "CheckpointCache", "default_cache_dir"]


_KERAS_STRUCTURE = "source.keras-structure.json"
_LAST_USED = "last-used"
DEFAULT_MAX_BYTES = 20 << 30
DEFAULT_MAX_AGE_DAYS = 30
SPARE_SECONDS = 600.0  # an entry used this recently may be in use by a run: never pruned


def default_cache_dir() -> Path:
    return Path(os.environ.get("WARMSTART_CACHE_DIR") or Path.home() / ".cache" / "warmstart")


@dataclass(frozen=True)
class CachedIndex:
    """A source checkpoint whose index is cached locally. Small and JSON-able (for task results)."""

    url: str  # the resolved source prefix URL
    identity: dict[str, Any]
    directory: str  # local cache directory of this source version
    hit: bool
    bytes_downloaded: int  # of the index (TF checkpoints; a Keras file's structure is read in blocks, not counted)
    kind: str = "tf-checkpoint"  # or "keras-weights": its cached structure, not an index

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "CachedIndex":
        return cls(**doc)

    @property
    def index_path(self) -> str:
        return str(Path(self.directory) / "source.index")


@dataclass(frozen=True)
class CachedTensors:
    """A local sparse copy of a source's tensors (or, ``direct``, the source itself to read in place), and the
    pinned input it is a copy of (its versions checked before and after the copy)."""

    prefix: str  # local prefix of the sparse checkpoint (direct: the source's URL)
    keys: tuple[str, ...]
    hit: bool
    bytes_downloaded: int
    direct: bool = False  # nothing copied: the transfer reads the source (a Keras file) by byte ranges
    pin: PinnedInput | None = None


@dataclass(frozen=True)
class CacheEntry:
    """One cached source version: its directory, its size on disk, when a run last used it (epoch s)."""

    path: Path
    bytes: int
    last_used: float


class CheckpointCache:
    """Cache rooted at ``root`` (default ``$WARMSTART_CACHE_DIR`` or ``~/.cache/warmstart``), bounded to
    ``max_bytes`` (``$WARMSTART_CACHE_MAX_BYTES``, default 20 GiB) and ``max_age_seconds``
    (``$WARMSTART_CACHE_MAX_AGE_DAYS``, default 30 days of disuse), enforced after every copy."""

    def __init__(self, root: str | Path | None = None, max_bytes: int | None = None,
                 max_age_seconds: float | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.max_bytes = max_bytes if max_bytes is not None else int(
            os.environ.get("WARMSTART_CACHE_MAX_BYTES", DEFAULT_MAX_BYTES))
        self.max_age_seconds = max_age_seconds if max_age_seconds is not None else 86400 * float(
            os.environ.get("WARMSTART_CACHE_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS))

    def _entry_dir(self, url: str, identity: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps([url, identity], sort_keys=True).encode()).hexdigest()[:32]
        return self.root / digest

    def fetch_index(self, url: str, storage_options: dict[str, Any] | None = None) -> CachedIndex:
        """Resolve ``url`` and cache its ``.index`` (one download per source version); for a Keras
        weights file, its structure (tensor names, shapes, byte offsets)."""
        if is_keras_file(str(url)):
            return self._fetch_keras_structure(str(url), storage_options)
        prefix = resolve_checkpoint(url, storage_options)
        index = prefix.with_suffix(".index")
        identity = object_version(index)
        directory = self._entry_dir(prefix.url, identity)
        target = directory / "source.index"
        if target.exists():
            _touch(directory)
            return CachedIndex(prefix.url, identity, str(directory), True, 0)
        directory.mkdir(parents=True, exist_ok=True)
        _touch(directory)
        data = read_bytes(index, INDEX_BYTES)
        _atomic_write(target, data)
        (directory / "source.json").write_text(json.dumps({"url": prefix.url, "identity": identity}))
        return CachedIndex(prefix.url, identity, str(directory), False, len(data))

    def _fetch_keras_structure(self, url: str, storage_options: dict[str, Any] | None) -> CachedIndex:
        loc = resolve(url, storage_options)
        identity = keras_versions(loc)
        directory = self._entry_dir(loc.url, identity)
        path = directory / _KERAS_STRUCTURE
        if path.exists():
            _touch(directory)
            return CachedIndex(loc.url, identity, str(directory), True, 0, "keras-weights")
        reader = KerasWeightsReader(url, storage_options)
        directory.mkdir(parents=True, exist_ok=True)
        _touch(directory)
        _atomic_write(path, json.dumps(reader.structure()).encode())
        (directory / "source.json").write_text(json.dumps({"url": loc.url, "identity": identity}))
        return CachedIndex(loc.url, identity, str(directory), False, 0, "keras-weights")

    def fetch_sources(self, rules: ParsedRules, storage_options: dict[str, Any] | None = None) -> dict[str, CachedIndex]:
        """Cache the index (a Keras file's structure) of every named source of ``rules`` (``sources:``)."""
        return {name: self.fetch_index(url, storage_options) for name, url in rules.sources.items()}

    def reader(self, cached: CachedIndex,
               storage_options: dict[str, Any] | None = None) -> BundleReader | KerasWeightsReader:
        """A reader over the remote source that takes its index (a Keras file's structure) from the cache."""
        path = Path(cached.directory) / (_KERAS_STRUCTURE if cached.kind == "keras-weights" else "source.index")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputNotFoundError(f"cache entry {cached.directory} was removed: fetch the index again") from None
        if cached.kind == "keras-weights":
            return KerasWeightsReader(cached.url, storage_options, structure=json.loads(data), versions=cached.identity)
        return BundleReader.with_index(resolve(cached.url, storage_options), data, cached.identity)

    def table(self, cached: CachedIndex, storage_options: dict[str, Any] | None = None) -> VariableTable:
        """The source's variable table from the cached index (TF2: plus its small object-graph tensor; TF1: named by
        the ``.meta`` beside the source, read in place)."""
        return checkpoint_table(self.reader(cached, storage_options), "source")

    def plan(self, cached: CachedIndex, target: Any, rules: ParsedRules, storage_options: dict[str, Any] | None = None,
             sources: dict[str, CachedIndex] | None = None, strategy: str = "auto",
             rules_input: PinnedInput | None = None) -> Plan:
        """Plan against the cached source indexes (``sources``: the named sources', by name), every input pinned
        (:func:`warmstart.pipeline.plan_transfer`); no tensor data is read."""
        from .pipeline import plan_transfer

        named = {name: self.reader(c, storage_options) for name, c in (sources or {}).items()}
        return plan_transfer(self.reader(cached, storage_options), target, rules, strategy, storage_options,
                             named, rules_input).plan

    def transfer(self, plan: Plan, cached: CachedIndex, tensors: CachedTensors, target: Any, output: str,
                 storage_options: dict[str, Any] | None = None, sources: dict[str, CachedIndex] | None = None,
                 source_tensors: dict[str, CachedTensors] | None = None, **kwargs: Any) -> Report:
        """Execute ``plan`` (:func:`warmstart.transfer` with ``plan=``) reading the local sparse copies
        (``source_tensors``: the named ``sources``', by name) or, for Keras files and local sources, the sources
        in place; the manifest names the real sources and their versions."""
        from .pipeline import transfer

        readers, copies = self._readers(cached, tensors, storage_options, sources, source_tensors)
        main = readers.pop("main")
        return transfer(main, target, output, plan=plan, storage_options=storage_options, sources=readers or None,
                        copies=copies, **kwargs)

    def certify(self, plan: Plan, cached: CachedIndex, tensors: CachedTensors, target: Any, staging: str,
                storage_options: dict[str, Any] | None = None, sources: dict[str, CachedIndex] | None = None,
                source_tensors: dict[str, CachedTensors] | None = None, output: str | None = None) -> Any:
        """The parity certificate of the staged output of ``plan`` (:func:`warmstart.pipeline.certify_staged`, never
        raising for its verdict), reading each source tensor from the local copy where it is there, else from the
        source itself (a TF1 graph's variables the plan does not copy)."""
        from .pipeline import PreferringReader, certify_staged

        readers, _ = self._readers(cached, tensors, storage_options, sources, source_tensors)
        sources_in_place = {"main": cached, **(sources or {})}
        readers = {name: r if r.url == sources_in_place[name].url else
                   PreferringReader(r, self.reader(sources_in_place[name], storage_options))
                   for name, r in readers.items()}
        return certify_staged(plan, readers, target, staging, "warn", storage_options, output)

    def _readers(self, cached: CachedIndex, tensors: CachedTensors, storage_options: dict[str, Any] | None,
                 sources: dict[str, CachedIndex] | None, source_tensors: dict[str, CachedTensors] | None
                 ) -> tuple[dict[str, Any], dict[str, PinnedInput]]:
        """Readers by source name (the local sparse copy, or the source read in place) and the pinned input each
        copy copies."""
        readers, copies = {}, {}
        for name, c, copy in [("main", cached, tensors), *((n, c, (source_tensors or {}).get(n))
                                                          for n, c in (sources or {}).items())]:
            if copy is None or copy.direct:
                readers[name] = self.reader(c, storage_options)
            else:
                readers[name] = BundleReader.at_prefix(resolve(copy.prefix))
                copies[name] = copy.pin
        return readers, copies

    def fetch_tensors(self, cached: CachedIndex, keys: list[str] | tuple[str, ...],
                      storage_options: dict[str, Any] | None = None,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES, pin: PinnedInput | None = None) -> CachedTensors:
        """A local sparse checkpoint with only ``keys`` (and a TF2 object graph) of the source. A Keras
        file's tensors, and a local source's, are not copied: the transfer reads them where they are
        (``direct``). ``pin``: the source as a plan pinned it: its files must still be those versions, before
        and after the copy (:class:`InputChangedError` otherwise). After a copy the cache is pruned to its
        bounds (:meth:`prune`)."""
        if cached.kind == "keras-weights" or resolve(cached.url, storage_options).is_local:
            return CachedTensors(cached.url, tuple(sorted(set(keys))), False, 0, direct=True, pin=pin)
        _touch(Path(cached.directory))
        reader = self.reader(cached, storage_options)
        wanted = sorted(set(keys) | ({OBJECT_GRAPH_KEY} & set(reader.records)))
        versions = [f.version for f in pin.files] if pin is not None else []
        digest = hashlib.sha256(json.dumps([wanted, versions], sort_keys=True).encode()).hexdigest()[:16]
        final = Path(cached.directory) / f"tensors-{digest}"
        prefix = final / "model.ckpt"
        if (final / "complete").exists():
            return CachedTensors(str(prefix), tuple(wanted), True, 0, pin=pin)
        staging = Path(cached.directory) / f".tensors-{digest}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        writer = BundleWriter(Location(_local_fs(), str(staging / "model.ckpt")))
        try:
            _verify(pin, storage_options)
            stats = write_subset(reader, wanted, writer, chunk_bytes)
            writer.finish()
            _verify(pin, storage_options)  # the bytes copied are the version pinned
        except BaseException:
            writer.abort()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / "complete").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # readers see a complete entry or none
        self.prune(self.max_bytes, self.max_age_seconds)
        return CachedTensors(str(prefix), tuple(wanted), False, stats.bytes_read, pin=pin)

    def entries(self) -> list[CacheEntry]:
        """Every cached source version, least recently used first."""
        if not self.root.is_dir():
            return []
        found = [CacheEntry(d, _tree_bytes(d), _last_used(d)) for d in self.root.iterdir() if d.is_dir()]
        return sorted(found, key=lambda e: e.last_used)

    def prune(self, max_bytes: int | None = None, max_age_seconds: float | None = None,
              spare_seconds: float = SPARE_SECONDS) -> list[CacheEntry]:
        """Remove entries unused for ``max_age_seconds``, then the least recently used until the cache
        holds at most ``max_bytes``; an entry used in the last ``spare_seconds`` is never removed (a run
        may be reading it). Returns what was removed."""
        now, removed = time.time(), []
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        for entry in entries:
            idle = now - entry.last_used
            too_old = max_age_seconds is not None and idle > max_age_seconds
            too_big = max_bytes is not None and total > max_bytes
            if (too_old or too_big) and idle > spare_seconds:
                shutil.rmtree(entry.path, ignore_errors=True)
                total -= entry.bytes
                removed.append(entry)
        return removed


def _verify(pin: PinnedInput | None, storage_options: dict[str, Any] | None) -> None:
    if pin is not None:
        from .pipeline import verify

        verify([pin], storage_options)


def _touch(directory: Path) -> None:
    (directory / _LAST_USED).touch()


def _last_used(directory: Path) -> float:
    try:
        return (directory / _LAST_USED).stat().st_mtime
    except OSError:
        return directory.stat().st_mtime


def _tree_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _local_fs():
    import fsspec

    return fsspec.filesystem("file")


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)
