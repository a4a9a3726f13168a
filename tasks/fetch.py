"""Fetch tasks: the source's index first, then only the tensors the plan needs (cached locally)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart.cache import CachedIndex, CheckpointCache

from ._common import IO_RETRY, storage_options_from_block

__all__ = ["fetch_index", "fetch_tensors"]


@task(name="fetch-index", cache_policy=NO_CACHE, **IO_RETRY)
def fetch_index(source: str, credentials_block: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Resolve the source checkpoint and cache its index; returns the cache record."""
    return CheckpointCache(cache_dir).fetch_index(source, storage_options_from_block(credentials_block)).to_json()


@task(name="fetch-tensors", cache_policy=NO_CACHE, **IO_RETRY)
def fetch_tensors(index: dict[str, Any], keys: list[str], credentials_block: str | None = None,
                  cache_dir: str | None = None) -> dict[str, Any]:
    """Download only ``keys`` (byte ranges) into a local sparse checkpoint; returns its record."""
    cache = CheckpointCache(cache_dir)
    return cache.fetch_tensors(CachedIndex.from_json(index), keys, storage_options_from_block(credentials_block)).to_json()
