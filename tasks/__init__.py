"""Prefect tasks of the warm-start flow; each makes one call into the warmstart engine."""

import os

# Prefect's ephemeral API (no PREFECT_API_URL) starts a server in a subprocess and gives up after 20 s by
# default; on a busy 2-core machine that start has taken longer (CI saw the demo fail with "Timed out while
# attempting to connect to ephemeral Prefect API server"). Prefect reads its settings when first imported,
# so the default is set here, before that import; a value the user sets wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from .fetch import fetch_index, fetch_rules, fetch_source_indexes, fetch_tensors
from .report import publish_report
from .shards import abort_units, prepare_units, publish_units, transfer_unit
from .transfer import transfer
from .upload import upload
from .validate import validate
from .verify import verify

__all__ = ["fetch_rules", "fetch_index", "fetch_source_indexes", "fetch_tensors", "validate", "transfer", "verify", "upload", "publish_report",
           "prepare_units", "transfer_unit", "publish_units", "abort_units"]
