"""Upload task: publish the staged output so that no reader sees a partial checkpoint."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart.pipeline import publish_output

from ._common import IO_RETRY, storage_options_from_block

__all__ = ["upload"]


@task(name="upload", cache_policy=NO_CACHE, **IO_RETRY)
def upload(staging: str, output: str, source: str, target: str, rules: dict[str, Any] | str | None = None,
           credentials_block: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Data and index objects first, then the state file and manifest; refuses an output that could
    reach an input (the source, a template, a target or rules file)."""
    return publish_output(staging, output, source, target, rules, storage_options_from_block(credentials_block),
                          overwrite=overwrite)
