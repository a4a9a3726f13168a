"""Fetch tasks: the source's index first, then only the tensors the plan needs (cached locally)."""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CheckpointCache

from ._common import DATA_TIMEOUT, IO_RETRY, METADATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["fetch_index", "fetch_source_indexes", "fetch_tensors"]


@task(name="fetch-index", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT, **IO_RETRY)
def fetch_index(source: str, credentials_block: CredentialsRef = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Resolve the source checkpoint and cache its index; returns the cache record."""
    started = time.perf_counter()
    record = CheckpointCache(cache_dir).fetch_index(source, storage_options_from_block(credentials_block))
    what = "structure" if record.kind == "keras-weights" else "index"
    log_stage(started, "source %s: %s %s", record.url, what,
              "from the local cache" if record.hit else f"fetched ({record.bytes_downloaded:,} bytes)")
    return record.to_json()


@task(name="fetch-source-indexes", cache_policy=NO_CACHE, timeout_seconds=METADATA_TIMEOUT, **IO_RETRY)
def fetch_source_indexes(rules: dict[str, Any] | str | None, credentials_block: CredentialsRef = None,
                         cache_dir: str | None = None) -> dict[str, dict[str, Any]]:
    """Cache the index of every named source of the rules (``sources:``); returns their records by name."""
    started = time.perf_counter()
    records = CheckpointCache(cache_dir).fetch_sources(rules, storage_options_from_block(credentials_block))
    for name, record in records.items():
        log_stage(started, "source %r %s: %s", name, record.url,
                  "from the local cache" if record.hit else f"fetched ({record.bytes_downloaded:,} bytes)")
    return {name: record.to_json() for name, record in records.items()}


@task(name="fetch-tensors", cache_policy=NO_CACHE, timeout_seconds=DATA_TIMEOUT, **IO_RETRY)
def fetch_tensors(index: dict[str, Any], keys: list[str], credentials_block: CredentialsRef = None,
                  cache_dir: str | None = None) -> dict[str, Any]:
    """Download only ``keys`` (byte ranges) into a local sparse checkpoint; returns its record."""
    started = time.perf_counter()
    cache = CheckpointCache(cache_dir)
    record = cache.fetch_tensors(CachedIndex.from_json(index), keys, storage_options_from_block(credentials_block))
    if record.direct:
        log_stage(started, "%d tensors: read in place by the transfer (a local source or a Keras file)",
                  len(record.keys))
    else:
        log_stage(started, "%d tensors: %s", len(record.keys),
                  "from the local cache" if record.hit else f"{record.bytes_downloaded:,} bytes downloaded")
    return record.to_json()
