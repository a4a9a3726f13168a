"""The ``warmstart`` command line.

Exit codes: 0 success; 1 the plan does not satisfy the rules (nothing written); 2 usage error;
3 an input is missing, unreadable or corrupt; 4 a storage or output error; 5 the parity certificate
failed (nothing published). Expected failures print one message on stderr, never a traceback.
``transfer`` runs the engine in process unless a Prefect API is configured or ``--prefect`` is given
(Prefect's temporary server costs seconds). ``verify`` and ``--verify``: :mod:`warmstart.cli_verify`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from ._quiet import QuietTensorFlowImport
from .cli_args import named_sources, print_json
from .cli_exit import end_process
from .cli_flow import TEMPORARY, prefect_api_configured, progress_bar, transfer_with_flow
from .cli_verify import add_verify_command, add_verify_option, certificate_words, return_freed_memory_here
from .errors import EXIT_CODES, PlanError, StorageError, UsageError, WarmStartError
from .planning import STRATEGIES

__all__ = ["main"]

EXIT_OK = 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .tables import read_table

    table = read_table(args.source)
    if args.json:
        print_json({
            "source": table.origin,
            "kind": table.kind,
            "variables": [
                {"name": v.name, "dtype": v.dtype, "shape": list(v.shape), "bytes": v.nbytes, "key": v.key,
                 **({"aliases": list(v.aliases)} if v.aliases else {}),
                 **({"positional": True} if v.positional else {})}
                for v in table.variables
            ],
        })
    else:
        from .planning.render import render_table

        render_table(table)
    return EXIT_OK


def _same_place(a, b) -> bool:
    from .storage import canonical_path

    return canonical_path(a) == canonical_path(b)


def cmd_signature(args: argparse.Namespace) -> int:
    from .tables import signature_of

    table = signature_of(args.target)
    text = json.dumps(table.to_json(), indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    from .storage import is_transient, resolve

    loc = resolve(args.output)
    if _same_place(loc, resolve(args.target)):
        raise StorageError(f"refusing to write the signature over its own target {loc.url}: choose another -o")
    try:
        with loc.fs.open(loc.path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise StorageError(f"cannot write {loc.url}: {exc}", is_transient(exc)) from None
    print(f"wrote the signature of {table.origin} ({len(table)} variables) to {loc.url}", file=sys.stderr)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from . import plan

    result = plan(args.source, args.target, rules=args.rules, sources=named_sources(args))
    if args.json:
        print_json(result.to_json())
    else:
        from .planning.render import render_plan

        render_plan(result)
    if not result.ok:
        if not args.json:  # the table above lists every problem: no pointer to where they are
            print(f"warmstart: {result.failure_message(where=None)}", file=sys.stderr)
        return PlanError.exit_code
    return EXIT_OK


def cmd_transfer(args: argparse.Namespace) -> int:
    use_flow = args.prefect or (not args.no_prefect and prefect_api_configured())
    if args.verbose:
        print(f"warmstart: running {'the Prefect warm-start flow' if use_flow else 'the engine directly'}",
              file=sys.stderr)
    if args.verify:
        return_freed_memory_here()
    doc = transfer_with_flow(args) if use_flow else _transfer_with_engine(args)
    from .planning.report import positional_words, unchecked_words

    if args.json:
        print_json(doc)
    else:
        print(f"{doc['status']}: wrote {doc['output']} (strategy {doc['strategy']}, coverage {doc['coverage']:.1%}, "
              f"{sum(doc['counts'].get(a, 0) for a in ('copy', 'cast', 'remap'))} variables copied, "
              f"{doc['seconds']:.2f} s); "
              f"manifest {doc['manifest']}; plan digest {doc['digest'][:16]}"
              + (f"; flow run {doc.get('flow_run_url') or doc['flow_run'] + TEMPORARY}" if doc.get("flow_run") else "")
              + (f"; {unchecked_words(doc['unchecked'])}" if doc.get("unchecked") else ""))
    summary, unpassed = certificate_words(doc)
    if summary and not args.json:
        print(summary)
    for warning in (positional_words(doc), unpassed):
        if warning:
            print(f"warmstart: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _transfer_with_engine(args: argparse.Namespace) -> dict:
    from .pipeline import transfer

    with progress_bar(enabled=not args.json and sys.stderr.isatty() and not args.shards) as progress:
        report = transfer(args.source, args.target, args.output, rules=args.rules, strategy=args.strategy,
                          overwrite=args.overwrite, shards=args.shards, dask=args.dask, progress=progress,
                          sources=named_sources(args), verify=args.verify)
    return {**report.to_json(), "flow_run": None, "flow_run_url": None}


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import CheckpointCache
    from .planning.report import human_bytes

    cache = CheckpointCache(args.dir)
    if args.action == "prune":
        removed = cache.prune(_size(args.max_size) if args.max_size else cache.max_bytes,
                              86400 * args.max_age_days if args.max_age_days is not None else cache.max_age_seconds,
                              spare_seconds=0 if args.all else 600)
        print(f"removed {len(removed)} entries ({human_bytes(sum(e.bytes for e in removed))})", file=sys.stderr)
    entries = cache.entries()
    print(f"{cache.root}: {len(entries)} entries, {human_bytes(sum(e.bytes for e in entries))} "
          f"(bounds: {human_bytes(cache.max_bytes)}, {cache.max_age_seconds / 86400:g} days unused)")
    return EXIT_OK


def _size(text: str) -> int:
    """``10G``, ``500M``, ``2048`` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError:
        raise UsageError(f"not a size: {text!r} (examples: 10G, 500M, 2048)") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir)


_SOURCE_HELP = ("the trained checkpoint: a prefix or a directory with a 'checkpoint' state file, or a Keras file "
                "(.keras, .weights.h5, .weights.json, legacy .h5); a path, file://, s3:// or gs:// URL")
_TARGET_HELP = ("what the new model expects: a template checkpoint, a TF1 MetaGraph (.meta), a Keras model (.keras) "
                "or weights template (.weights.h5), a signature (.json) or a builder py:module:function")
EXIT_HELP = "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
EXAMPLES = """examples:
  warmstart inspect runs/old/                          the source's variables
  warmstart plan runs/old/ new.keras --rules rules.yaml      what would be copied, and why
  warmstart transfer runs/old/ new.keras out/warm --rules rules.yaml --verify
  warmstart verify runs/old/ new.keras out/warm --rules rules.yaml    the parity certificate of an output
  warmstart transfer s3://models/bert/run-42 s3://models/clf/init s3://models/clf/warm --prefect"""


def _source_target(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The SOURCE and TARGET positionals, ``--rules`` and ``--source`` that ``plan`` and ``transfer`` share."""
    p.add_argument("source", metavar="SOURCE", help=_SOURCE_HELP)
    p.add_argument("target", metavar="TARGET", help=_TARGET_HELP)
    p.add_argument("--rules", metavar="FILE", help="rules file (YAML or JSON, any URL); default: strict rules")
    p.add_argument("--allow-code", action="store_true",
                   help="let a py:module:function named in the rules (source_structure) run; a builder given as "
                   "TARGET always runs (you typed it)")
    p.add_argument("--source", dest="sources", action="append", metavar="NAME=URL",
                   help="another source by name (repeatable), as under 'sources:' in the rules (it replaces one of "
                   "the same name); the rules' 'fill_from:' says which target variables it fills; SOURCE is 'main'")
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart",
        description="Copy learned variables from one TensorFlow checkpoint/graph/model into another, checked.",
        epilog=EXAMPLES + "\n\n" + EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"warmstart {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a checkpoint's variables: name, dtype, shape, bytes")
    p.add_argument("source", metavar="SOURCE", help="checkpoint prefix or directory, or a Keras 3 .weights.h5 / "
                   ".keras file (path, file://, s3://, gs://)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("signature", help="write a target's variable signature as JSON")
    p.add_argument("target", metavar="TARGET",
                   help="template checkpoint, *.meta, *.keras, *.json or py:module:function")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: stdout)")
    p.set_defaults(func=cmd_signature)

    p = _source_target(sub.add_parser("plan", help="validate SOURCE against TARGET and show the plan; reads no "
                                                   "tensor data"))
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_plan)

    p = _source_target(sub.add_parser(
        "transfer", help="plan, copy and publish a checkpoint the target loads",
        description="Plan, copy and publish a checkpoint the target loads. Runs the engine in this process, or "
        "the Prefect warm-start flow when a Prefect API is configured (PREFECT_API_URL, or the active Prefect "
        "profile) or --prefect is given; --json prints the same document either way.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("output", metavar="OUTPUT", help="output directory URL (must be empty, or --overwrite)")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto (default): stream into template checkpoints, signatures and Keras weights files, "
                   "restore into graphs and models that must be built; see docs/guide/strategies.md")
    p.add_argument("--overwrite", action="store_true", help="replace what a previous run published in OUTPUT")
    p.add_argument("--shards", type=int, metavar="N",
                   help="write N data files, each by a unit of work (on Dask with --dask, or in the flow)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the units on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--prefect", action="store_true",
                      help="run the Prefect warm-start flow (Prefect's temporary server when no API is configured)")
    mode.add_argument("--no-prefect", action="store_true",
                      help="run the engine in this process even when a Prefect API is configured")
    add_verify_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON document (no progress bar)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens (warmstart's, Prefect's, TF's logs)")
    p.set_defaults(func=cmd_transfer)

    add_verify_command(sub, _source_target, EXIT_HELP)

    p = sub.add_parser("cache", help="show or prune the local cache of remote sources' indexes and tensors")
    p.add_argument("action", choices=["info", "prune"], help="info: entries and size; prune: trim to the bounds")
    p.add_argument("--dir", help="cache directory (default: $WARMSTART_CACHE_DIR or ~/.cache/warmstart)")
    p.add_argument("--max-size", metavar="SIZE", help="prune to at most SIZE (10G, 500M; default: the bound, "
                   "$WARMSTART_CACHE_MAX_BYTES or 20G)")
    p.add_argument("--max-age-days", type=float, metavar="DAYS", help="prune entries unused for DAYS (default: "
                   "$WARMSTART_CACHE_MAX_AGE_DAYS or 30)")
    p.add_argument("--all", action="store_true", help="also entries used in the last 10 minutes (no run may be "
                   "using the cache)")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("demo", help="the main job on example data: write checkpoints with TF, plan, run the flow")
    p.add_argument("--dir", default="warmstart-demo", help="where to write the example data (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
    return parser


def _quiet(verbose: bool) -> None:
    """No TensorFlow start-up lines, no Prefect console chatter or telemetry, unless ``-v``; set before
    either is imported (the user's own settings win)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client would print its telemetry notice
    # pydantic looks for plugins by reading every installed distribution's entry points the first time a
    # model validates: ~20 ms of every command on an environment with TensorFlow and Prefect, for plugins
    # no warmstart command uses.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())  # also the imports of user code and Prefect tasks


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet(getattr(args, "verbose", False))
    if os.getcwd() not in sys.path:  # py:module:function targets import from where the user stands
        sys.path.insert(0, os.getcwd())
    func: Callable[[argparse.Namespace], int] = args.func
    from .tables import allowing_code

    try:
        with allowing_code(getattr(args, "allow_code", False), typed=[getattr(args, "target", None)]):
            return func(args)
    except PlanError as exc:
        if getattr(args, "json", False) and exc.plan is not None:
            print_json(exc.plan.to_json())  # every problem is in it ("errors"): no pointer to where they are
            print(f"warmstart: {exc.plan.failure_message(where=None)}", file=sys.stderr)
        else:
            print(f"warmstart: {exc}", file=sys.stderr)
        return exc.exit_code
    except WarmStartError as exc:
        if getattr(args, "json", False):
            certificate = getattr(exc, "certificate", None)
            print_json({"status": "failed", "error": str(exc), "error_type": type(exc).__name__,
                         **({"verify": certificate.to_json()} if certificate is not None else {})})
        print(f"warmstart: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("warmstart: interrupted", file=sys.stderr)
        return 130


def console() -> NoReturn:
    """The ``warmstart`` program (its console script, ``python -m warmstart.cli``): :func:`main`, then the process
    ends as :func:`~warmstart.cli_exit.end_process` says (without Python's teardown when nothing needs it)."""
    end_process(main())


if __name__ == "__main__":  # pragma: no cover
    console()
