"""What a person waits for: start-up and whole-process times of warmstart's commands, against baselines measured
in the same run.

    python benchmarks/startup.py [--repeat 9] [--size-mib 1024] [--out benchmarks/STARTUP.md]

Every figure is a fresh process timed from outside (wall clock; CPU from the kernel's accounting of the child),
the median of --repeat runs after one discarded warm-up; the commands of a group run in turn (A B C A B C ...), so
a ratio holds while the shared machine's speed drifts. Outputs are removed, and ``sync`` run, before each run
(untimed). The rows:

  python -c pass                    the interpreter alone: the baseline of the start-up rows
  python -c "import warmstart"      target <= 0.2 s
  warmstart --help                  target <= 0.35 s
  warmstart transfer (example set)  the demo's data (warmstart.examples.write_example_set: 1.6 MiB), run in
                                    process (--no-prefect): target <= 0.35 s
  warmstart transfer (1 GiB)        benchmarks/run.py's medium set (128 x 8 MiB float32, every tensor renamed)
  cp (1 GiB)                        coreutils cp of that source's data file: the byte-copy floor as a whole
                                    process; target: the transfer <= 1.3x this
  python copy (1 GiB)               the least a Python program copying those bytes does (the interpreter, then
                                    posix_fallocate and copy_file_range, as the transfer copies): what is left
                                    of the transfer beyond it is warmstart's own work (imports, rules, plan, index)

``warmstart`` is the console script of the Python running this file (``<venv>/bin/warmstart``), run directly (a
pyenv shim in front of it is a bash script that adds its own start-up). Start-up rows run twice: with bytecode
cached (a directory given as PYTHONPYCACHEPREFIX, filled by the warm-up: what an installed package runs) and in
the environment as it is (where PYTHONDONTWRITEBYTECODE=1 and an editable install, every process compiles
warmstart's modules from source). The targets are judged on the first.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import RENAME  # noqa: E402
from layout import child_env, ensure_fixtures, fixture_specs, log  # noqa: E402
from report import command_line, machine  # noqa: E402

from warmstart.planning.report import human_bytes  # noqa: E402

TARGET_IMPORT_S = 0.2
TARGET_HELP_S = 0.35
TARGET_TINY_S = 0.35
TARGET_STREAM_RATIO = 1.3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=9, help="counted runs of each command (default 9)")
    p.add_argument("--size-mib", type=int, default=1024, help="the stream's set (benchmarks/run.py's medium)")
    p.add_argument("--out", default=str(HERE / "STARTUP.md"), help="markdown results (the same name with .json next to it)")
    p.add_argument("--work-dir", default=str(HERE / "work"), help="fixtures, outputs and the bytecode cache")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run before it counts as failed")
    return p


# --------------------------------------------------------------------------- one run, many runs


def run_once(argv: list[str], env: dict, timeout: float) -> dict:
    """Wall seconds and CPU seconds (user + sys) of one process; stdout kept, a failure raised with its stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise SystemExit(f"{argv[:3]}... took more than {timeout} s")
            time.sleep(0.0005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": out.read().decode()}


def measure_group(commands: dict[str, dict], repeat: int, timeout: float) -> dict[str, list[dict]]:
    """Each command once per round, ``repeat`` rounds after one warm-up round; ``prepare`` (untimed) before each."""
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for round_ in range(repeat + 1):
        for name, c in commands.items():
            c.get("prepare", lambda: None)()
            result = run_once(c["argv"], c["env"], timeout)
            if round_:
                runs[name].append(result)
    return runs


def summarize(runs: list[dict], baseline: list[dict] | None = None) -> dict:
    walls = [r["wall_s"] for r in runs]
    out = {"n": len(runs), "wall_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
           "cpu_s": statistics.median(r["cpu_s"] for r in runs)}
    if baseline:
        out["x_baseline"] = statistics.median(r["wall_s"] / b["wall_s"] for r, b in zip(runs, baseline))
    seconds = [float(m.group(1)) for r in runs if (m := re.search(r'"seconds": ([0-9.]+)', r["stdout"]))]
    if seconds:
        out["in_process_s"] = statistics.median(seconds)
    return out


# --------------------------------------------------------------------------- the inputs


def example_set(work: Path, timeout: float) -> Path:
    """The demo's example set, written once by TensorFlow (in a child process)."""
    root = work / "startup" / "examples"
    if not (root / "rules.yaml").exists():
        log(f"[startup] writing the example set into {root} ...")
        shutil.rmtree(root, ignore_errors=True)
        code = f"from warmstart.examples import write_example_set; write_example_set({str(root)!r})"
        subprocess.run([sys.executable, "-c", code], env=child_env(), check=True, timeout=timeout,
                       capture_output=True)
    return root


def medium_set(work: Path, size_mib: int, timeout: float) -> tuple[Path, Path]:
    """benchmarks/run.py's medium set (reused when written before) and its rules: every tensor renamed."""
    specs = fixture_specs(Namespace(size_mib=size_mib, large_mib=0, small_count=0, sets=["medium"]))
    ensure_fixtures(work, specs, timeout)
    rules = work / "startup" / "medium-rules.json"
    rules.write_text(json.dumps({"rename": RENAME, "on_missing": "init"}))
    return work / "fixtures" / "medium", rules


def environments(work: Path) -> dict[str, dict]:
    cached = {k: v for k, v in child_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(work / "startup" / "pycache")
    return {"cached": cached, "as-is": child_env()}


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("warmstart")
    return [str(script)] if script.exists() else [sys.executable, "-m", "warmstart.cli"]


def _fresh(path: Path, mkdir: bool = False):
    def prepare() -> None:
        shutil.rmtree(path, ignore_errors=True)
        if mkdir:
            path.mkdir(parents=True)
        os.sync()  # an earlier output's writeback must not overlap this run
    return prepare


# --------------------------------------------------------------------------- the runs


def startup_rows(examples: Path, work: Path, env: dict, repeat: int, timeout: float) -> dict[str, dict]:
    out = work / "startup" / "out-small"
    ws = console_script()
    commands = {
        "python -c pass": {"argv": [sys.executable, "-c", "pass"]},
        "python -c 'import warmstart'": {"argv": [sys.executable, "-c", "import warmstart"]},
        "warmstart --help": {"argv": [*ws, "--help"]},
        "warmstart transfer (example set)": {
            "argv": [*ws, "transfer", str(examples / "pretrained"), str(examples / "new-model-init"), str(out),
                     "--rules", str(examples / "rules.yaml"), "--no-prefect"], "prepare": _fresh(out)},
    }
    for c in commands.values():
        c["env"] = env
    runs = measure_group(commands, repeat, timeout)
    base = runs["python -c pass"]
    return {name: summarize(r, None if name == "python -c pass" else base) for name, r in runs.items()}


#: The least a Python process copying a file does: the interpreter's start-up, then the transfer's own kernel copy.
PYTHON_COPY = """import os, sys
src, dst = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
size = os.fstat(src).st_size
os.posix_fallocate(dst, 0, size)
done = 0
while done < size:
    done += os.copy_file_range(src, dst, min(8 << 20, size - done), done)
"""


def stream_rows(medium: Path, rules: Path, work: Path, env: dict, repeat: int, timeout: float) -> dict[str, dict]:
    out, out_cp = work / "startup" / "out-stream", work / "startup" / "out-cp"
    data = next((medium / "src").glob("*.data-00000-of-*"))
    commands = {
        "warmstart transfer": {
            "argv": [*console_script(), "transfer", str(medium / "src"), str(medium / "tmpl"), str(out), "--rules",
                     str(rules), "--no-prefect", "--json"], "prepare": _fresh(out), "env": env},
        "cp": {"argv": ["cp", str(data), str(out_cp)], "prepare": _fresh(out_cp, mkdir=True), "env": env},
        "python copy": {"argv": [sys.executable, "-c", PYTHON_COPY, str(data), str(out_cp / "py")],
                        "prepare": _fresh(out_cp, mkdir=True), "env": env},
    }
    try:
        runs = measure_group(commands, repeat, timeout)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out_cp, ignore_errors=True)
    return {"warmstart transfer": summarize(runs["warmstart transfer"], runs["cp"]), "cp": summarize(runs["cp"]),
            "python copy": summarize(runs["python copy"], runs["cp"]), "bytes": data.stat().st_size}


def check_targets(doc: dict) -> list[dict]:
    rows, cached = [], doc["startup"]["cached"]
    for name, limit in (("python -c 'import warmstart'", TARGET_IMPORT_S), ("warmstart --help", TARGET_HELP_S),
                        ("warmstart transfer (example set)", TARGET_TINY_S)):
        wall = cached[name]["wall_s"]
        rows.append({"target": f"{name} <= {limit} s (median, whole process)",
                     "verdict": "PASS" if wall <= limit else "FAIL", "detail": f"{wall:.3f} s"})
    ratio = doc["stream"]["warmstart transfer"]["x_baseline"]
    rows.append({"target": f"{human_bytes(doc['stream']['bytes'])} stream <= {TARGET_STREAM_RATIO}x cp of the same "
                 "bytes (whole processes, median of the pairwise ratios)", "verdict": "PASS" if ratio <= TARGET_STREAM_RATIO else "FAIL",
                 "detail": f"{ratio:.2f}x"})
    return rows


# --------------------------------------------------------------------------- the report


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# warmstart start-up and whole-process times", "",
             f"- date: {doc['started']}; total run time {doc['total_seconds']} s",
             f"- command: `{doc['command']}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:.1f} GiB RAM, {m['os']}; python {m['python']}, "
             f"warmstart {m['warmstart']} (git {m['git']})",
             f"- `warmstart` is `{doc['console_script']}`, run directly; each figure: fresh processes, median of "
             f"{doc['repeat']} runs after a warm-up (min and max beside it), commands of a group in turn",
             f"- load average before the runs: {doc['load_before']}; after: {doc['load_after']} "
             "(a shared 2-core machine: read the ratios, measured pairwise in the same rounds)", "",
             "## Start-up", "", "`x python`: wall / `python -c pass`, run by run. `cached`: bytecode cached "
             "(PYTHONPYCACHEPREFIX, as an installed package runs); `as-is`: this environment as it is "
             f"(PYTHONDONTWRITEBYTECODE={doc['dont_write_bytecode'] or 'unset'}: every process compiles warmstart's "
             "own modules).", "",
             "| command | cached wall s (min-max) | cpu s | x python | as-is wall s (min-max) | cpu s | x python |",
             "|---|---|---|---|---|---|---|"]
    for name, c in doc["startup"]["cached"].items():
        a = doc["startup"]["as-is"][name]
        lines.append(f"| `{name}` | {_wall(c)} | {c['cpu_s']:.3f} | {_x(c)} | {_wall(a)} | {a['cpu_s']:.3f} | {_x(a)} |")
    s, cp, size = doc["stream"]["warmstart transfer"], doc["stream"]["cp"], human_bytes(doc["stream"]["bytes"])
    py = doc["stream"]["python copy"]
    lines += ["", f"## {size} stream, whole processes", "",
              "| command | wall s (min-max) | cpu s | x cp | of which the transfer (in process) |", "|---|---|---|---|---|",
              f"| `warmstart transfer` ({size} of 8 MiB tensors, every one renamed) | {_wall(s)} | {s['cpu_s']:.3f} | {_x(s)} "
              f"| {s.get('in_process_s', float('nan')):.3f} s |",
              f"| `cp` (the source's data file) | {_wall(cp)} | {cp['cpu_s']:.3f} | 1.00x | |",
              f"| `python copy` (the interpreter, then the same kernel copy) | {_wall(py)} | {py['cpu_s']:.3f} | {_x(py)} "
              "| |", "",
              f"Outside the transfer's in-process figure (which counts the rules, the plan, the copy and the commit), "
              f"the process spends about "
              f"{s['wall_s'] - s.get('in_process_s', 0) - doc['startup']['cached']['python -c pass']['wall_s']:.3f} s "
              "beyond the interpreter's own start-up on importing what it runs and parsing its arguments (the "
              "transfer's wall time, less its in-process part and `python -c pass`).", "",
              "## Targets", "", "| target | verdict | measured |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['verdict']} | {t['detail']} |" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def _wall(s: dict) -> str:
    return f"{s['wall_s']:.3f} ({s['wall_min_s']:.3f}-{s['wall_max_s']:.3f})"


def _x(s: dict) -> str:
    return f"{s['x_baseline']:.2f}x" if "x_baseline" in s else "1.00x"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(args.work_dir).resolve()
    started = time.perf_counter()
    doc: dict = {"started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                 "command": command_line(), "machine": machine(), "repeat": args.repeat,
                 "console_script": " ".join(console_script()), "load_before": _load(),
                 "dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE")}
    examples = example_set(work, args.timeout)
    medium, rules = medium_set(work, args.size_mib, args.timeout)
    envs = environments(work)
    doc["startup"] = {}
    for name, env in envs.items():
        log(f"[startup] start-up rows, bytecode {name} ...")
        doc["startup"][name] = startup_rows(examples, work, env, args.repeat, args.timeout)
    log("[startup] the stream against cp ...")
    doc["stream"] = stream_rows(medium, rules, work, envs["cached"], args.repeat, args.timeout)
    doc["load_after"] = _load()
    doc["targets"] = check_targets(doc)
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.write_text(render(doc))
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    print(render(doc))
    return 0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
