"""Which ``py:module:function`` builders may run: data never becomes code.

A builder given by the caller (the CLI's TARGET, the Python ``target=`` argument) runs: the user
typed it, as they would type a Prefect entrypoint. A ``py:`` anywhere else (in rules, such as
``source_structure``; in a flow parameter, which anyone who can start a run types into a form) runs
only when the caller opted in: ``--allow-code`` on the CLI, ``allow_code=True`` in Python, or
``WARMSTART_ALLOW_CODE=1`` in the environment of the process that runs the flow (a deployment's or a
worker's). An allowed builder runs in the warmstart process itself: it can do whatever Python can.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

from ..errors import UsageError

__all__ = ["ALLOW_CODE_ENV", "BUILDER_PREFIX", "allowing_code", "code_allowed", "refuse_code", "refuse_code_in_rules"]

ALLOW_CODE_ENV = "WARMSTART_ALLOW_CODE"
BUILDER_PREFIX = "py:"
# True: any builder (the caller opted in); otherwise the builders the caller typed itself.
_ALLOWED: ContextVar[bool | frozenset[str]] = ContextVar("warmstart_allowed_code", default=frozenset())


@contextlib.contextmanager
def allowing_code(allow: bool = False, typed: Iterable[object] = ()) -> Iterator[None]:
    """Within the block, builders run: any with ``allow``, else those in ``typed`` (what the caller gave
    as its own target; non-strings are ignored), plus what an enclosing block allows."""
    current = _ALLOWED.get()
    if current is True or allow:
        token = _ALLOWED.set(True)
    else:
        token = _ALLOWED.set(current | {t for t in typed if isinstance(t, str) and t.startswith(BUILDER_PREFIX)})
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def code_allowed(spec: str | None = None) -> bool:
    """Whether a builder (``spec``, or any when None) may run here and now."""
    allowed = _ALLOWED.get()
    if allowed is True or os.environ.get(ALLOW_CODE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return spec is not None and spec in allowed


def refuse_code(value: object, where: str) -> None:
    """Raise :class:`UsageError` when ``value`` is a ``py:`` builder that may not run (see the module)."""
    if isinstance(value, str) and value.startswith(BUILDER_PREFIX) and not code_allowed(value):
        raise UsageError(
            f"{where}: {value!r} names Python code, which warmstart does not run from rules or flow parameters "
            f"unless allowed (--allow-code, allow_code=True, or {ALLOW_CODE_ENV}=1 where the flow runs)")


def refuse_code_in_rules(structure: object, origin: str, field: str = "source_structure") -> None:
    """A field of the rules that can name a builder (``source_structure``, ``verify.source_model``...) checked by
    :func:`refuse_code`."""
    refuse_code(structure, f"{origin}: {field}")
