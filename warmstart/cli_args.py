"""What several ``warmstart`` commands share: their ``--source NAME=URL`` options, their ``--json`` output."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UsageError

__all__ = ["named_sources", "print_json"]


def print_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def named_sources(args: argparse.Namespace) -> dict[str, str] | None:
    """``--source NAME=URL`` options as a dict. Raises :class:`UsageError` for a malformed or repeated one."""
    named: dict[str, str] = {}
    for option in args.sources or ():
        name, sep, url = option.partition("=")
        if not sep or not name or not url:
            raise UsageError(f"--source {option!r}: expected NAME=URL (e.g. --source encoder_run=s3://b/run-a/ckpt-7)")
        if name in named:
            raise UsageError(f"--source {name!r} is given twice")
        named[name] = url
    return named or None
