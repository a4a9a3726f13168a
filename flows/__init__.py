"""Prefect flows: the warm-start flow and an example retraining flow that calls it as a subflow."""

import warmstart.tasks as _tasks  # noqa: F401  (first: sets Prefect defaults before Prefect is imported)
