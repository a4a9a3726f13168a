"""Prefect tasks of the warm-start flow; each makes one call into the warmstart engine."""

from .fetch import fetch_index, fetch_tensors
from .report import publish_report
from .transfer import transfer
from .upload import upload
from .validate import validate

__all__ = ["fetch_index", "fetch_tensors", "validate", "transfer", "upload", "publish_report"]
