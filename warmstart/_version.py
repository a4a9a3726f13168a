"""The installed version of warmstart (one place; the package, manifests and the CLI read it)."""

__version__ = "0.1.0"
