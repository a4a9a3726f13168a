"""Which packages the distribution installs (everything else is in pyproject.toml).

The engine is ``warmstart`` and its subpackages; the repository's top-level ``flows/`` and ``tasks/`` folders
(the Prefect layer) are installed inside its namespace as ``warmstart.flows`` and ``warmstart.tasks``, so the
distribution claims no bare top-level ``flows`` or ``tasks`` package (they would collide with any other project
in the same environment, a Prefect worker image for one).
"""

from setuptools import find_packages, setup

PREFECT_LAYER = {"warmstart.flows": "flows", "warmstart.tasks": "tasks"}

setup(
    packages=find_packages(include=["warmstart", "warmstart.*"]) + list(PREFECT_LAYER),
    package_dir=PREFECT_LAYER,
)
