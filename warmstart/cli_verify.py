"""The certificate's part of the command line: ``warmstart verify`` and ``transfer --verify``.

``warmstart verify SOURCE TARGET OUTPUT`` certifies a finished output (exit 5 when the certificate fails);
``transfer --verify`` (``--verify=warn``) certifies the staged output before it is published. The command line
itself (:mod:`warmstart.cli`) only hooks these in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .cli_args import named_sources, print_json
from .errors import CertificateError

__all__ = ["add_verify_option", "add_verify_command", "cmd_verify", "certificate_words", "return_freed_memory_here"]


def add_verify_option(p: argparse.ArgumentParser) -> None:
    """``--verify`` / ``--verify=warn`` of ``transfer``."""
    p.add_argument("--verify", nargs="?", const="fail", choices=("fail", "warn"), metavar="fail|warn",
                   help="certify the output before publishing it (the parity certificate: source and target layers, "
                   "and the rules' verify: pairs, run on seeded probes): --verify fails the run when it fails (exit "
                   "5, nothing published); --verify=warn publishes and reports")


def add_verify_command(sub: Any, source_target: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
                       epilog: str) -> None:
    """The ``verify`` subcommand (``source_target`` adds SOURCE, TARGET, --rules, --source, --allow-code)."""
    p = source_target(sub.add_parser(
        "verify", help="the parity certificate of a finished output: does it compute what the source computed?",
        description="Run the source's and the output's layers (and the rules' verify: pairs) on seeded probes and "
        "compare, for an output written by warmstart or by any other tool (a directory, a Keras weights file or a "
        "checkpoint prefix). Exit 5 when the certificate fails.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("output", metavar="OUTPUT", help="the output: a directory (model.weights.h5, or a checkpoint), a "
                   "Keras weights file or a checkpoint prefix")
    p.add_argument("--probes", type=int, metavar="N", help="probe inputs per layer (default: the rules' verify: "
                   "probes, else 4)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the probes (default: the rules', else 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from . import verify

    return_freed_memory_here()
    certificate = verify(args.source, args.target, args.output, rules=args.rules, sources=named_sources(args),
                         probes=args.probes, seed=args.seed)
    if args.json:
        print_json({"status": "ok" if certificate.passed else "failed", "verify": certificate.to_json()})
    else:
        from rich.console import Console

        from .verification.render import render_certificate

        render_certificate(certificate, Console() if Console().is_terminal else Console(width=200))
    if certificate.passed:
        return 0
    if not args.json:
        print(f"warmstart: {certificate.failure_message().removesuffix('; nothing was published')}", file=sys.stderr)
    return CertificateError.exit_code


def return_freed_memory_here() -> None:
    """This command's process certifies: freed blocks go back to the system (a lower peak; see
    :mod:`warmstart.verification.memory`), which a library call never sets in its caller's process."""
    from .verification.memory import return_freed_memory

    return_freed_memory()


def certificate_words(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """What ``transfer`` prints of the certificate in its report ``doc``: its summary (stdout) and, when it did not
    pass but the output was published (``--verify=warn``), a warning (stderr)."""
    found = doc.get("verify")
    if not found:
        return None, None
    warning = None if found["verdict"] == "passed" else f"{found['summary']} (published: --verify=warn)"
    return found["summary"], warning
