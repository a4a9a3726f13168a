"""Upload task: publish the staged output so that no reader sees a partial checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.events import emit_event
from prefect.cache_policies import NO_CACHE

from warmstart.pipeline import publish_output
from warmstart.planning import MAIN_SOURCE, Plan
from warmstart.storage import MANIFEST

from ._common import DATA_TIMEOUT, IO_RETRY, log_stage
from .credentials import CredentialsRef, storage_options_from_block

__all__ = ["upload", "PUBLISHED_EVENT"]

PUBLISHED_EVENT = "warmstart.checkpoint.published"


@task(name="upload", cache_policy=NO_CACHE, timeout_seconds=DATA_TIMEOUT, **IO_RETRY)
def upload(staging: str, output: str, plan: Plan, credentials_block: CredentialsRef = None,
           overwrite: bool = False) -> dict[str, Any]:
    """Data and index objects first, then the state file and manifest; refuses an output that could
    reach an input of ``plan`` (the sources, a template, a target or rules file). Then emits the event
    ``warmstart.checkpoint.published`` (the output as resource, every source as related resource, the
    plan's digest and the manifest's figures as payload, and the certificate's verdict when the run made one) for a
    training deployment to trigger on."""
    started = time.perf_counter()
    manifest = json.loads((Path(staging) / MANIFEST).read_text())
    published = publish_output(staging, output, plan, storage_options_from_block(credentials_block),
                               overwrite=overwrite)
    log_stage(started, "published %s (%d files; manifest %s; plan digest %s)", published["output"],
              len(published["files"]), published["manifest"], plan.digest[:12])
    source = manifest["source"]["url"]
    emit_event(event=PUBLISHED_EVENT,
               resource={"prefect.resource.id": f"warmstart.checkpoint.{published['output']}",
                         "prefect.resource.name": published["output"]},
               related=[{"prefect.resource.id": f"warmstart.source.{source}", "prefect.resource.role": "source",
                         "prefect.resource.name": source}] + _named_sources(manifest),
               payload={"url": published["output"], "manifest": published["manifest"], "source": source,
                        "target": manifest["target"]["spec"], "strategy": manifest["strategy"],
                        "digest": plan.digest, "inputs": manifest["inputs"],
                        "coverage": manifest["plan"]["coverage"], "counts": manifest["plan"]["counts"],
                        **{k: manifest["stats"].get(k) for k in ("bytes_read", "bytes_written", "seconds")},
                        **({"verify": {k: manifest["verify"][k] for k in ("verdict", "summary", "counts", "digest")}}
                           if manifest.get("verify") else {}),
                        **({"sources": {name: record["url"] for name, record in manifest["sources"].items()}}
                           if len(manifest.get("sources", {})) > 1 else {})})
    return published


def _named_sources(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """The named sources (beside ``main``) of the manifest as related resources, role ``source``."""
    return [{"prefect.resource.id": f"warmstart.source.{record['url']}", "prefect.resource.role": "source",
             "prefect.resource.name": record["url"], "warmstart.source.name": name}
            for name, record in manifest.get("sources", {}).items() if name != MAIN_SOURCE]
