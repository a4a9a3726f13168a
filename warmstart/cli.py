"""The ``warmstart`` command line.

Exit codes: 0 success; 1 the plan does not satisfy the rules (nothing written); 2 usage error;
3 an input is missing, unreadable or corrupt; 4 a storage or output error. Expected failures
print one message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import PlanError, StorageError, UsageError, WarmStartError

__all__ = ["main"]

EXIT_OK, EXIT_PLAN, EXIT_USAGE, EXIT_INPUT, EXIT_STORAGE = 0, 1, 2, 3, 4


def _print_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .tables import read_table

    table = read_table(args.source)
    if args.json:
        _print_json({
            "source": table.origin,
            "kind": table.kind,
            "variables": [
                {"name": v.name, "dtype": v.dtype, "shape": list(v.shape), "bytes": v.nbytes, "key": v.key}
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

    result = plan(args.source, args.target, rules=args.rules)
    if args.json:
        _print_json(result.to_json())
    else:
        from .planning.render import render_plan

        render_plan(result)
    if not result.ok:
        if not args.json:
            print(f"warmstart: {result.failure_message()}", file=sys.stderr)
        return EXIT_PLAN
    return EXIT_OK


def cmd_transfer(args: argparse.Namespace) -> int:
    from .formats.keras import is_keras_file

    keras_source = is_keras_file(args.source)
    if keras_source and not args.no_prefect:
        print("warmstart: a Keras weights file as source: running the engine directly (the warm-start flow "
              "reads TF checkpoints)", file=sys.stderr)
    if args.no_prefect or keras_source:
        from .pipeline import transfer

        report = transfer(args.source, args.target, args.output, rules=args.rules, strategy=args.strategy,
                          overwrite=args.overwrite, shards=args.shards, dask=args.dask)
        doc = report.to_json()
    else:
        doc = _transfer_with_flow(args)
    if args.json:
        _print_json(doc)
    else:
        print(f"{doc['status']}: wrote {doc['output']} (strategy {doc['strategy']}, coverage {doc['coverage']:.1%}, "
              f"{doc['counts']['copy'] + doc['counts']['cast']} variables copied, {doc['seconds']:.2f} s); "
              f"manifest {doc['manifest']}")
    return EXIT_OK


class _ExpectedFailureFilter(logging.Filter):
    """Drops console records that carry a traceback of an expected warmstart failure: the command
    prints that failure as one line itself. Records still reach the Prefect API in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, WarmStartError)


def _quiet_expected_tracebacks() -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.addFilter(_ExpectedFailureFilter())


def _transfer_with_flow(args: argparse.Namespace) -> dict:
    """Run the Prefect warm-start flow (an ephemeral API unless PREFECT_API_URL is set); the engine
    itself never imports Prefect, only this command does."""
    from flows.warm_start import WarmStartRequest, warm_start

    from .storage import read_manifest

    _quiet_expected_tracebacks()
    request = WarmStartRequest(source=args.source, target=args.target, output=args.output, rules_url=args.rules,
                               strategy=args.strategy, overwrite=args.overwrite, shards=args.shards,
                               dask_address=args.dask)
    summary = warm_start(request)
    manifest = read_manifest(summary["manifest"])
    return {**manifest["plan"], "output": summary["output"], "manifest": summary["manifest"],
            "strategy": summary["strategy"], "bytes_read": summary["bytes_read"],
            "bytes_written": summary["bytes_written"], "seconds": summary["seconds"]}


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir)


def _source_target(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The SOURCE and TARGET positionals and ``--rules`` that ``plan`` and ``transfer`` share."""
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--rules", metavar="FILE", help="rules file (YAML or JSON); default: strict rules")
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart",
        description="Copy learned variables from one TensorFlow checkpoint/graph/model into another, checked.",
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

    p = _source_target(sub.add_parser("transfer", help="run the warm-start flow: plan, copy and publish a "
                                                       "checkpoint the target loads"))
    p.add_argument("output", metavar="OUTPUT", help="output directory URL (must be empty, or --overwrite)")
    p.add_argument("--strategy", choices=["auto", "stream", "restore", "assign"], default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace what a previous run published in OUTPUT")
    p.add_argument("--shards", type=int, metavar="N",
                   help="write N data files, each by a unit of work (on Dask with --dask, or in the flow)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the units on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786)")
    p.add_argument("--no-prefect", action="store_true",
                   help="run the engine directly instead of the Prefect warm-start flow")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("demo", help="the main job on example data: write checkpoints with TF, plan, run the flow")
    p.add_argument("--dir", default="warmstart-demo", help="where to write the example data (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # py:module:function targets import from where the user stands
        sys.path.insert(0, os.getcwd())
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except PlanError as exc:
        if getattr(args, "json", False) and exc.plan is not None:
            _print_json(exc.plan.to_json())
        print(f"warmstart: {exc}", file=sys.stderr)
        return EXIT_PLAN
    except WarmStartError as exc:
        if getattr(args, "json", False):
            _print_json({"status": "failed", "error": str(exc), "error_type": type(exc).__name__})
        print(f"warmstart: error: {exc}", file=sys.stderr)
        return exc.exit_code if not isinstance(exc, UsageError) else EXIT_USAGE
    except KeyboardInterrupt:
        print("warmstart: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
