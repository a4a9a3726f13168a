"""Variable tables of user code and live objects: ``py:module:function`` builders (run by design, like a
Prefect entrypoint, when the caller gave them: :mod:`.code_policy` says which may run) and a ``tf.Graph``,
``Session``, Keras model or ``tf.Module`` passed in. A builder runs in this process: whatever it
raises, ``sys.exit`` included, is a :class:`TargetError`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._quiet import quiet_import
from ..errors import TargetError, UsageError
from .table import VariableTable
from .tf_graphs import table_from_graph
from .tf_objects import table_from_trackable

__all__ = ["table_from_builder", "run_builder", "table_from_object"]


_ACCEPTED_OBJECTS = "a tf.Graph, a tf.compat.v1.Session, a Keras model (or layer) or a tf.Module"


_BUILDER_PREFIX = "py:"


def table_from_builder(spec: str) -> VariableTable:
    """The variables of what the builder ``py:package.module:function`` returns when called without
    arguments: a ``tf.Graph``, a Keras model or a ``tf.Module`` (or a Session).

    This imports and runs user code, by design. Raises :class:`UsageError` for a malformed spec and
    :class:`TargetError` when the module cannot be imported, the function is missing, not callable
    or raises, or it returns anything else.
    """
    return _table_from_live(run_builder(spec), origin=spec, described=f"builder {spec} returned")


def run_builder(spec: str) -> Any:
    """Import and call the builder ``py:module:function``; raises :class:`UsageError` for a malformed
    spec and :class:`TargetError` when the builder cannot be found or raises."""
    module_name, function_name = _parse_builder_spec(spec)
    return _call_builder(spec, _import_builder(spec, module_name, function_name))


def _parse_builder_spec(spec: str) -> tuple[str, str]:
    """``py:package.module:function`` -> (module, function); raises :class:`UsageError` otherwise."""
    body = spec[len(_BUILDER_PREFIX):] if isinstance(spec, str) and spec.startswith(_BUILDER_PREFIX) else None
    module_name, _, function_name = (body or "").partition(":")
    if not module_name or not function_name.isidentifier():
        raise UsageError(f"a builder target is written 'py:package.module:function'. Received: {spec!r}")
    return module_name, function_name


def _import_builder(spec: str, module_name: str, function_name: str) -> Any:
    """The builder function; raises :class:`TargetError` naming ``spec`` when it cannot be found."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"builder {spec}: cannot import module {module_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # user code: any error (an exit too) while importing it is the target's
        raise TargetError(f"builder {spec}: importing {module_name!r} failed: {_what(exc)}") from exc
    builder = getattr(module, function_name, None)
    if builder is None:
        raise TargetError(f"builder {spec}: module {module_name!r} has no attribute {function_name!r}")
    if not callable(builder):
        raise TargetError(f"builder {spec}: {module_name}.{function_name} is a {type(builder).__name__}, not a function")
    return builder


def _call_builder(spec: str, builder: Any) -> Any:
    """Call the builder without arguments; raises :class:`TargetError` when it raises."""
    try:
        return builder()
    except (Exception, SystemExit) as exc:  # user code: whatever it raises (an exit too) makes the target unusable
        raise TargetError(f"builder {spec} raised {_what(exc)}") from exc


def _what(exc: BaseException) -> str:
    """An exception in words; ``sys.exit(n)`` as what it is (a run must never end as a success through it)."""
    if isinstance(exc, SystemExit):
        return f"SystemExit (it called sys.exit({exc.code!r}))"
    return f"{type(exc).__name__}: {exc}"


def table_from_object(obj: Any) -> VariableTable:
    """The table of a live object: a ``tf.Graph``, a ``tf.compat.v1.Session``, a Keras model or a
    ``tf.Module``. Raises :class:`TargetError` for anything else."""
    return _table_from_live(obj, origin=None, described="the target is")


def _table_from_live(obj: Any, origin: str | None, described: str) -> VariableTable:
    """Dispatch a live object to its table function; raises :class:`TargetError` for other objects."""
    keras = quiet_import("keras")
    tf = quiet_import("tensorflow")

    if isinstance(obj, (tf.Graph, tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
        return table_from_graph(obj, origin)
    if isinstance(obj, keras.Layer):
        return table_from_trackable(obj, origin, kind="keras")
    if isinstance(obj, tf.Module):
        return table_from_trackable(obj, origin, kind="module")
    raise TargetError(f"{described} a {type(obj).__module__}.{type(obj).__qualname__}; expected {_ACCEPTED_OBJECTS}")

