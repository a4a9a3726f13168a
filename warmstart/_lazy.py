"""A package's names, imported from the module that defines them when first used (PEP 562).

A command imports what it runs and no more: ``import warmstart`` and ``warmstart --help`` import neither NumPy,
pydantic nor fsspec, and a local transfer never imports the wings it does not use (TensorFlow's strategies,
Keras files, Dask). Each package lists which of its modules exports which names; the first access imports
that module and keeps the value as a plain attribute of the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``. ``exports`` maps each module (relative to the
    package: ``".locations"``) to the names it exports; the module ``"."`` lists submodules exported whole."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if module == ".":
            value = importlib.import_module(f".{name}", package)
        else:
            value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return list(where), __getattr__, __dir__
