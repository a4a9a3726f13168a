"""Fetch tasks: the rules (once), the source's index first, then only the tensors the plan needs (cached
locally, checked against the versions the plan pinned)."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CachedTensors, CheckpointCache
from warmstart.pipeline import read_rules
from warmstart.planning import ParsedRules, PinnedInput
from warmstart.planning.report import human_bytes

from ._common import DATA_TIMEOUT, IO_RETRY, METADATA_TIMEOUT, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["fetch_rules", "fetch_index", "fetch_source_indexes", "fetch_tensors"]


@task(name="fetch-rules", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=METADATA_TIMEOUT, **IO_RETRY)
def fetch_rules(url: str, credentials_block: CredentialsRef = None) -> tuple[ParsedRules, PinnedInput | None]:
    """Read and check the rules file, once per run: every later step takes these rules, never the URL."""
    started = time.perf_counter()
    rules, origin = read_rules(url, storage_options_from_block(credentials_block))
    log_stage(started, "rules %s: %d rename, %d transforms, %d named sources", url, len(rules.rename),
              len(rules.transforms), len(rules.sources))
    return rules, origin


@task(name="fetch-index", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=METADATA_TIMEOUT, **IO_RETRY)
def fetch_index(source: str, credentials_block: CredentialsRef = None, cache_dir: str | None = None) -> CachedIndex:
    """Resolve the source checkpoint and cache its index; returns the cache record."""
    started = time.perf_counter()
    record = CheckpointCache(cache_dir).fetch_index(source, storage_options_from_block(credentials_block))
    what = "structure" if record.kind == "keras-weights" else "index"
    log_stage(started, "source %s: %s %s", record.url, what,
              "from the local cache" if record.hit else f"fetched ({human_bytes(record.bytes_downloaded)})")
    return record


@task(name="fetch-source-indexes", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=METADATA_TIMEOUT,
      **IO_RETRY)
def fetch_source_indexes(rules: ParsedRules, credentials_block: CredentialsRef = None,
                         cache_dir: str | None = None) -> dict[str, CachedIndex]:
    """Cache the index of every named source of the rules (``sources:``); returns their records by name."""
    started = time.perf_counter()
    records = CheckpointCache(cache_dir).fetch_sources(rules, storage_options_from_block(credentials_block))
    for name, record in records.items():
        log_stage(started, "source %r %s: %s", name, record.url,
                  "from the local cache" if record.hit else f"fetched ({human_bytes(record.bytes_downloaded)})")
    return records


@task(name="fetch-tensors", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=DATA_TIMEOUT, **IO_RETRY)
def fetch_tensors(index: CachedIndex, keys: list[str], pin: PinnedInput | None = None,
                  credentials_block: CredentialsRef = None, cache_dir: str | None = None) -> CachedTensors:
    """Download only ``keys`` (byte ranges) into a local sparse checkpoint, from the version ``pin`` records
    (checked before and after the copy); returns its record."""
    started = time.perf_counter()
    cache = CheckpointCache(cache_dir)
    record = cache.fetch_tensors(index, keys, storage_options_from_block(credentials_block), pin=pin)
    if record.direct:
        log_stage(started, "%d tensors: read in place by the transfer (a local source or a Keras file)",
                  len(record.keys))
    else:
        log_stage(started, "%d tensors: %s", len(record.keys),
                  "from the local cache" if record.hit else f"{human_bytes(record.bytes_downloaded)} downloaded")
    return record
