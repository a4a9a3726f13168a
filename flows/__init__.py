"""Prefect flows: the warm-start flow and an example retraining flow that calls it as a subflow."""

# warmstart.tasks first: it sets Prefect's defaults before Prefect is imported
from warmstart.tasks._common import quiet_expected_failures

quiet_expected_failures()  # an expected failure is said once in a run's logs, without a traceback
