"""Units of work of a sharded stream transfer: one per output data file, each runnable anywhere.

:func:`split_units` cuts an ok plan into ``n`` units, byte-balanced, each a contiguous run of the
source's (and template's) bytes so that its reads merge as the stream strategy's do. A :class:`Unit`
is small picklable data (URLs, storage options, its plan entries, the plan digest): any process that
can reach the storage runs it with :func:`run_unit`, which opens the checkpoints' indexes, copies its
tensors with the stream strategy (:func:`stream_part`: merged ranged reads, CRCs checked, memory
bounded by the chunk) straight into the output storage under a staging name of its own
(``.warmstart-part-<digest>-<k>-of-<n>.<attempt>``: two attempts at one unit, say on a worker presumed
lost and on its replacement, never write the same object), then writes the unit's record (digest, which
part, its size and etag/mtime, its index entries). A unit whose record matches its part is not run
again: a re-run after an interruption redoes only the missing units. The index, state file and manifest
are written by the caller once every unit succeeded (``warmstart.pipeline``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, StorageError, UsageError
from ..formats.bundle import BundleEntry, BundleReader, BundleWriter, decode_entry, encode_entry
from ..planning import DIRECT, Plan, PlanEntry
from ..formats import CHECKPOINT_NAME
from ..storage import PART_PREFIX, Location, is_transient, object_version, read_bytes, resolve
from .stream import DEFAULT_CHUNK_BYTES, stream_part, template_keys

__all__ = ["Unit", "UnitResult", "split_units", "plan_digest", "run_prefix", "run_unit", "run_unit_retrying", "MAX_ATTEMPTS"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # a unit failing with a transient storage error is run again, up to this many times
_BACKOFF_SECONDS = 0.5  # doubled at every attempt


@dataclass(frozen=True)
class Unit:
    """Data file ``index`` of ``count`` of the output: copy ``moved`` from ``source`` and ``kept`` from
    ``template`` into ``output`` (a directory URL). ``digest`` names the plan and inputs it belongs to."""

    index: int
    count: int
    source: str
    template: str | None
    output: str
    storage_options: dict[str, Any] | None
    moved: tuple[PlanEntry, ...]
    kept: tuple[str, ...]
    nbytes: int
    digest: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    @property
    def stem(self) -> str:
        """What the names of this unit's parts and record begin with."""
        return f"{run_prefix(self.digest)}-{self.index:05d}-of-{self.count:05d}"

    @property
    def record_name(self) -> str:
        return self.stem + ".json"

    @property
    def final_name(self) -> str:
        return f"{CHECKPOINT_NAME}.data-{self.index:05d}-of-{self.count:05d}"


@dataclass(frozen=True)
class UnitResult:
    """What a unit wrote: the staged ``part`` (a name in the output), its index ``entries`` (raw key,
    encoded entry), the manifest rows ``written`` (key, dtype, shape, bytes, masked CRC), and where and
    how it ran."""

    index: int
    part: str
    entries: tuple[tuple[bytes, bytes], ...]
    written: tuple[tuple[Any, ...], ...]
    bytes_read: int
    bytes_written: int
    seconds: float
    reused: bool = False
    worker: str = ""

    def index_entries(self) -> dict[bytes, BundleEntry]:
        return {key: decode_entry(raw) for key, raw in self.entries}

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "part": self.part, "entries": [[k.hex(), v.hex()] for k, v in self.entries],
                "written": [list(row) for row in self.written], "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written, "seconds": self.seconds}

    @classmethod
    def from_json(cls, doc: dict[str, Any], reused: bool = False, worker: str = "") -> UnitResult:
        written = tuple((k, d, tuple(s), n, tuple(c) if isinstance(c, list) else c) for k, d, s, n, c in doc["written"])
        return cls(doc["index"], doc["part"], tuple((bytes.fromhex(k), bytes.fromhex(v)) for k, v in doc["entries"]), written,
                   doc["bytes_read"], doc["bytes_written"], doc["seconds"], reused, worker)


def run_prefix(digest: str) -> str:
    """What the names of every part and record of a sharded run with plan digest ``digest`` begin with."""
    return f"{PART_PREFIX}{digest[:16]}"


def plan_digest(plan: Plan, count: int, chunk_bytes: int) -> str:
    """What a staged part is valid for: the plan (its entries and its inputs' versions: :attr:`Plan.digest`) and
    the unit split."""
    return hashlib.sha256(f"{plan.digest}:{count}:{chunk_bytes}".encode()).hexdigest()


def _position(reader: BundleReader, key: str) -> tuple[int, int]:
    record = reader.records[key]
    entry = record.slices[0][1] if record.slices else record.entry
    return entry.shard_id, entry.offset


def split_units(plan: Plan, source: BundleReader, template: BundleReader | None, output: str, count: int,
                storage_options: dict[str, Any] | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> list[Unit]:
    """``count`` units covering the plan's output, cut where the running byte total crosses
    ``k * total / count`` along the inputs' byte order (a tensor is never split: it lives in one data
    file, so one tensor larger than ``total / count`` makes its unit the largest). Raises
    :class:`UsageError` for ``count < 1`` or a failed plan."""
    if count < 1:
        raise UsageError(f"shards must be at least 1, not {count}")
    if not plan.ok:
        raise UsageError("refusing to split a plan that does not satisfy the rules")
    if plan.counts.get("remap"):
        raise UsageError("a sharded output cannot hold remap transforms yet: write it unsharded (shards: 1)")
    if len(plan.sources) > 1:  # a unit reads one source: never another source's tensor by the same key
        raise UsageError("a sharded output reads one source, but the plan names several: write it unsharded")
    moved = [e for e in plan.entries if e.action in DIRECT]
    items = [((0, *_position(source, e.source_key)), source.records[e.source_key].stored_bytes, e) for e in moved]
    items += [((1, *_position(template, k)), template.records[k].stored_bytes, k)  # type: ignore[union-attr]
              for k in template_keys(plan, template)]
    items.sort(key=lambda item: item[0])
    total = sum(size for _, size, _ in items)
    groups: list[list[tuple[int, Any]]] = [[] for _ in range(count)]
    running = 0
    for _, size, what in items:
        k = min(count - 1, int(count * (running + size / 2) / total)) if total else 0
        groups[k].append((size, what))
        running += size
    digest = plan_digest(plan, count, chunk_bytes)
    return [Unit(k, count, source.url, template.url if template else None, output, storage_options,
                 tuple(w for _, w in group if isinstance(w, PlanEntry)),
                 tuple(w for _, w in group if isinstance(w, str)), sum(s for s, _ in group), digest, chunk_bytes)
            for k, group in enumerate(groups)]


def run_unit_retrying(unit: Unit, attempts: int = MAX_ATTEMPTS) -> UnitResult:
    """:func:`run_unit`, run again (with a growing pause) while it fails with a transient storage error."""
    for attempt in range(1, attempts + 1):
        try:
            return run_unit(unit)
        except StorageError as exc:
            if not exc.transient or attempt == attempts:
                raise
            log.warning("unit %d of %d failed (attempt %d of %d), retrying: %s", unit.index, unit.count, attempt,
                        attempts, exc)
            time.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def run_unit(unit: Unit) -> UnitResult:
    """Write the unit's data file under its staging name in the output, and its record; a part staged
    by an earlier run of the same unit (its record matching) is kept as is."""
    started = time.perf_counter()
    out = resolve(unit.output, unit.storage_options)
    record_loc = out.child(unit.record_name)
    reused = _staged(unit, out, record_loc)
    if reused is not None:
        return reused
    source = BundleReader.at_prefix(resolve(unit.source, unit.storage_options))
    template = BundleReader.at_prefix(resolve(unit.template, unit.storage_options)) if unit.template else None
    _check_readable(unit, source, template)
    part = out.child(f"{unit.stem}.{uuid.uuid4().hex[:8]}")
    writer = BundleWriter(out.child(CHECKPOINT_NAME), unit.index, unit.count, data_loc=part)
    try:
        stats = stream_part(list(unit.moved), list(unit.kept), source, template, writer, unit.chunk_bytes)
        entries = writer.close_data()
    except BaseException:
        writer.abort()
        raise
    result = UnitResult(unit.index, part.path.rsplit("/", 1)[-1], tuple((k, encode_entry(e)) for k, e in sorted(entries.items())),
                        tuple((w.key, w.dtype, w.shape, w.size, w.crc32c) for w in writer.written),
                        stats.bytes_read, writer.bytes_written, round(time.perf_counter() - started, 3),
                        worker=_worker_name())
    _write_record(unit, part, record_loc, result)
    return result


def _check_readable(unit: Unit, source: BundleReader, template: BundleReader | None) -> None:
    """Raise :class:`InputNotFoundError`, before anything is written, for a tensor the unit reads that its inputs
    no longer hold (replaced since the units were prepared: the pinned versions are checked before publishing)."""
    from .remap import check_readable

    for entry in unit.moved:
        check_readable(entry, source, template)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _write_record(unit: Unit, part: Location, record_loc: Location, result: UnitResult) -> None:
    doc = {"digest": unit.digest, "unit": unit.index, "count": unit.count, "identity": object_version(part),
           "result": result.to_json()}
    try:
        with record_loc.fs.open(record_loc.path, "w") as f:
            f.write(json.dumps(doc))
    except OSError as exc:
        raise StorageError(f"writing {record_loc.url} failed: {exc}", is_transient(exc)) from None


def _own_part(unit: Unit, name: Any) -> bool:
    """Whether ``name`` is one an attempt at ``unit`` stages under (its stem, a dot, an attempt's hex): a record
    is data in the output, and publishing renames the part it names, so it may name nothing else (../ included)."""
    return isinstance(name, str) and name.startswith(unit.stem + ".") and name[len(unit.stem) + 1:].isalnum()


def _staged(unit: Unit, out: Location, record_loc: Location) -> UnitResult | None:
    """The result recorded for a part an earlier run staged, if the part is still what it recorded."""
    try:
        doc = json.loads(read_bytes(record_loc))
        if doc.get("digest") != unit.digest or doc.get("unit") != unit.index \
                or not _own_part(unit, doc["result"]["part"]):
            return None
        part = out.child(doc["result"]["part"])
        if object_version(part) != doc["identity"]:
            return None
        result = UnitResult.from_json(doc["result"], reused=True, worker=_worker_name())
    except (InputError, OSError, ValueError, KeyError, TypeError):
        return None
    log.info("unit %d of %d: reusing %s staged by an earlier run", unit.index, unit.count, part.url)
    return result
