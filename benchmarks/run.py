"""Reproducible benchmark of warmstart against a byte-copy floor and TensorFlow's own ways.

    python benchmarks/run.py [--size-mib 1024] [--small-count 20000] [--out benchmarks/RESULTS.md] [--s3]

Fixture sets (written once into the work dir and reused while their parameters are unchanged):
  small   many small tensors (--small-count x 1 KiB float32)
  medium  8 MiB float32 tensors, --size-mib / 8 of them
  large   one tensor larger than the stream chunk (--large-mib, default size/4, at least 32 MiB)
Each set has a TF-written source (``old/...``), a template checkpoint, a TF1 ``.meta`` and a signature
(all ``new/...``: every tensor is renamed). Selections of 10%, 50%, 100% of the target variables
are made with include regexes. Every measurement runs in a fresh process (benchmarks/methods.py);
see benchmarks/README.md for the methods and how to read the ratios.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import SELECTIONS  # noqa: E402
from layout import Layout, describe, ensure_fixtures, fixture_specs, log  # noqa: E402
from measure import METHODS, contention, measure_set, run_s3  # noqa: E402
from report import command_line, disk_free, machine, render  # noqa: E402
from targets import check_targets  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="size of the 'medium' set (8 MiB tensors); default 1024")
    p.add_argument("--small-count", type=int, default=20000, help="tensors in the 'small' set (1 KiB each)")
    p.add_argument("--large-mib", type=int, default=0, help="the 'large' tensor (default size/4, at least twice the stream chunk)")
    p.add_argument("--out", default=str(HERE / "RESULTS.md"), help="markdown results (JSON goes next to it)")
    p.add_argument("--json-out", default=None, help="raw JSON (default: results.json next to --out)")
    p.add_argument("--work-dir", default=str(HERE / "work"), help="fixtures and scratch outputs (git-ignored)")
    p.add_argument("--s3", action="store_true", help="also stream from a moto S3 server through a counting proxy")
    p.add_argument("--s3-selections", default="10", help="selections for --s3 (comma list of 10,50,100)")
    p.add_argument("--sets", default="small,medium,large")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--selections", default="10,50,100")
    p.add_argument("--repeat", type=int, default=7, help="runs per non-TF method (median and min reported)")
    p.add_argument("--tf-repeat", type=int, default=3, help="runs per TF-based method (see --tf-repeat-max-s)")
    p.add_argument("--tf-repeat-max-s", type=float, default=60,
                   help="repeat a TF-based method only while its runs take less than this (default 60 s)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement before it counts as failed")
    p.add_argument("--no-profile", action="store_true", help="skip the extra cProfile runs (not timed in the tables)")
    p.add_argument("--profile-methods", default="ws-stream",
                   help="methods to run once more under cProfile per set (100%% selection); default ws-stream")
    p.add_argument("--clean", action="store_true", help="delete the work dir (fixtures too) at the end")
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], list[int]]:
    """The arguments (``sets`` and ``s3_selections`` as lists), the methods and the selections."""
    p = _parser()
    args = p.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    selections = [int(s) for s in args.selections.split(",") if s]
    args.s3_selections = [int(s) for s in args.s3_selections.split(",") if s]
    for s in selections + args.s3_selections:
        if s not in SELECTIONS:
            p.error(f"selections must be among {sorted(SELECTIONS)}")
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    return args, methods, selections


def load_sets(args, work: Path, doc: dict) -> dict[str, Layout]:
    """Write or reuse the fixture sets; describe each in ``doc["sets"]``."""
    specs = fixture_specs(args)
    layouts: dict[str, Layout] = {}
    infos = ensure_fixtures(work, specs, args.timeout * 2)
    for name, spec in specs.items():
        layout = Layout(work / "fixtures" / name, spec)
        layouts[name] = layout
        doc["sets"][name] = {"spec": spec, "description": describe(name, spec), "model_bytes": layout.model_bytes,
                             "source_index_bytes": layout.src_index_bytes, "fixture": infos[name]}
    return layouts


def write_results(args, doc: dict, work: Path) -> None:
    """Print and write the markdown, write the JSON next to it; clear the work dir's scratch parts."""
    text = render(doc)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    json_out = Path(args.json_out) if args.json_out else out.parent / "results.json"
    json_out.write_text(json.dumps(doc, indent=1, default=str))
    log(f"[bench] wrote {out} and {json_out} in {doc['total_seconds']} s total ({disk_free(work)})")
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "out", ignore_errors=True)
        shutil.rmtree(work / "jobs", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args, methods, selections = parse_args(argv)
    started = time.perf_counter()
    work = Path(args.work_dir).resolve()
    (work / "out").mkdir(parents=True, exist_ok=True)
    for stale in (work / "out").iterdir():
        shutil.rmtree(stale, ignore_errors=True)
    doc: dict = {"machine": machine(), "command": command_line(), "started": _dt.datetime.now(_dt.timezone.utc)
                 .strftime("%Y-%m-%d %H:%M:%S UTC"), "args": {k: v for k, v in vars(args).items()},
                 "sets": {}, "runs": [], "summary": {}, "s3": [], "profiles": {}}
    log(f"[bench] work dir {work} ({disk_free(work)})")
    layouts = load_sets(args, work, doc)
    for name, layout in layouts.items():
        measure_set(args, work, name, layout, methods, selections, doc)
    if args.s3:
        doc["s3"] = run_s3(args, work, layouts, args.timeout)
    doc["contention"] = contention(doc["runs"])
    doc["targets"] = check_targets(doc, layouts)
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    write_results(args, doc, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
