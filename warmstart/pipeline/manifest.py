"""The manifest of a published output (``warmstart.json``): which plan (its digest), which inputs at which
versions, the rules, the full plan, and a CRC32C per written tensor."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .._version import __version__
from ..formats import CHECKPOINT_NAME
from ..formats.bundle import BundleReader
from ..planning import MAIN_SOURCE, PinnedInput, Plan

__all__ = ["manifest", "tensor_checksums", "reader_rows"]


def manifest(plan: Plan, target: Any, strategy: str, result: dict[str, Any]) -> dict[str, Any]:
    """The manifest document of ``plan`` executed with ``strategy`` (``result``: tensors, absent, unchecked,
    bytes read and written, seconds). Sources are named by what the plan pinned: the real source and its
    versions, also when the transfer read a cached copy."""
    sources = {pin.name: _source_record(pin) for pin in plan.pinned("source")}
    return {
        "format": "warmstart.manifest",
        "version": 1,
        "tool": {"name": "warmstart", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "digest": plan.digest,
        "source": sources.get(MAIN_SOURCE, {"url": plan.source.origin}),
        "sources": sources,
        "inputs": [i.to_json() for i in plan.inputs],
        "target": {"spec": target if isinstance(target, str) else plan.target.origin,
                   "origin": plan.target.origin, "kind": plan.target.kind},
        "rules": plan.rules.model_dump(mode="json"),
        "strategy": strategy,
        "checkpoint": {"prefix": CHECKPOINT_NAME, "tensors": result["tensors"]},
        "absent": result["absent"],
        # tensors read only in part ({"checkpoint": "source", "source": name, "key"} or {"checkpoint": "template",
        # "key"}): their checksums could not be verified
        "unchecked": list(result.get("unchecked", [])),
        "stats": {k: result[k] for k in ("bytes_read", "bytes_written", "seconds")},
        # the parity certificate of the output (transfer --verify), None when none was made
        "verify": result.get("verify"),
        "plan": plan.to_json(),
    }


def _source_record(pin: PinnedInput) -> dict[str, Any]:
    """A source as the manifest names it: its URL, the version of its index (or file), and every file's."""
    index = next((f.version for f in pin.files if f.url.endswith(".index")), pin.files[0].version if pin.files else None)
    return {"url": pin.url, "given": pin.given, "kind": pin.kind, "index": index,
            "files": [f.to_json() for f in pin.files]}


def tensor_checksums(rows) -> list[dict[str, Any]]:
    """The manifest's ``tensors``: one row per tensor, by key; a partitioned tensor lists a CRC per slice."""
    return [{"key": key, "dtype": dtype, "shape": list(shape), "bytes": size,
             "crc32c_masked": list(crc) if isinstance(crc, tuple) else crc}
            for key, dtype, shape, size, crc in sorted(rows, key=lambda row: row[0])]


def reader_rows(reader: BundleReader):
    """(key, dtype, shape, stored bytes, CRC32C) of every tensor of a checkpoint (one CRC per slice)."""
    for key, rec in reader.records.items():
        crc = tuple(e.crc32c for _, e in rec.slices) if rec.slices else rec.entry.crc32c
        yield key, rec.dtype, rec.shape, rec.stored_bytes, crc
