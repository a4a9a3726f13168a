"""The results as markdown (``render``: the header, the fixture sets, the results table, warmstart
stream vs TensorFlow, the S3 runs, the targets and the cProfile tops, in that order, one function per
section) and what the header says about the run: ``machine()`` (CPU, RAM, OS, package versions, git
revision, file system of the work dir), ``command_line()`` and ``disk_free()``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from _common import MIB
from layout import GIB, HERE, REPO
from targets import ws_vs_tf


def _f(v, fmt="{:.3f}", na="n/a") -> str:
    return na if v is None else fmt.format(v)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _mib(v):
    return None if v is None else v / MIB


# --------------------------------------------------------------------------- rendering


def render(doc: dict) -> str:
    lines = _header(doc) + _sets(doc) + _results(doc) + _vs_tf(doc) + _phases_and_failures(doc) + _s3(doc) \
        + _targets(doc) + _profiles(doc)
    lines.append("")
    return "\n".join(lines)


def _header(doc: dict) -> list[str]:
    m = doc["machine"]
    busy = doc.get("contention", {})
    return ["# warmstart benchmark results", "",
            f"- date: {doc['started']}; total run time {doc.get('total_seconds', '?')} s",
            f"- command: `{doc['command']}`",
            f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:.1f} GiB RAM, {m['os']}; work dir on {m['fs']}",
            f"- python {m['python']}, tensorflow {m['tensorflow']}, warmstart {m['warmstart']} "
            f"(git {m['git']}), numpy {m['numpy']}, fsspec {m['fsspec']}",
            "- every number is one fresh process per run, warm page cache (each set's files read once "
            "before its runs), TF/warmstart import time excluded from `wall` and shown separately; "
            "`wall` is the median of the runs (`n`), `peak RSS` the max, whole process, imports included.",
            f"- other processes' CPU during the measurements: median {busy.get('median', 0):.0%}, "
            f"max {busy.get('max', 0):.0%} of the machine "
            f"({busy.get('over_10', 0)} of {busy.get('runs', 0)} runs above 10%)"]


def _sets(doc: dict) -> list[str]:
    lines = ["", "## Fixture sets", ""]
    for s in doc["sets"].values():
        fx = s["fixture"]
        lines.append(f"- **{s['description']}**, source index {s['source_index_bytes'] / 1024:.1f} KiB; "
                     f"fixture {'reused' if fx.get('reused') else 'written'} ({fx.get('times')})")
    return lines


def _results(doc: dict) -> list[str]:
    lines = ["", "## Results", "",
             "`x floor`: wall / the byte-copy floor that writes the same output (see README). "
             "`read`/`written`: the engine's Report (warmstart) or computed from the selection (others); "
             "`rchar`/`wchar`: bytes through read()/write() syscalls (`/proc/self/io`); `user`/`sys`: CPU seconds "
             "of the method (median; user + sys well below wall means waiting); `others' CPU`: the largest share of the "
             "machine's CPU that other processes used during a run of this row (the machine is shared: a high value "
             "marks a suspect measurement).", ""]
    head = ("| set | sel | method | n | wall s | min s | x floor | x floor (min) | import s | peak RSS MiB | RSS after import MiB | "
            "user s | sys s | others' CPU | read MiB | written MiB | rchar MiB | wchar MiB | check |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for s in doc["summary"].values():
        for meth, r in s["methods"].items():
            lines.append(_result_row(s, meth, r))
    return lines


def _result_row(s: dict, meth: str, r: dict) -> str:
    sel = f"{s['selection']}% ({s['selected_tensors']}, {s['selected_bytes'] / MIB:.1f} MiB)"
    if r["status"] != "ok":
        return f"| {s['set']} | {sel} | {meth} | {r['n']} | n/a | | | | | | | | | | | | | | {_md(r['error'])[:300]} |"
    check = "" if r["verified"] is None else ("ok" if r["verified"] else "MISMATCH: " + str(r.get("verify_note")))
    return (f"| {s['set']} | {sel} | {meth} | {r['n']} | {r['wall_s']:.3f} | {r['wall_min_s']:.3f} | "
            f"{_f(r['x_floor'], '{:.2f}x')} | {_f(r['x_floor_min'], '{:.2f}x')} | "
            f"{r['import_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['rss_after_import_mib']:.0f} | "
            f"{r['cpu_user_s']:.2f} | {r['cpu_sys_s']:.2f} | {r['other_cpu_share_max']:.0%} | "
            f"{_f(_mib(r['bytes_read']), '{:.1f}')} | {_f(_mib(r['bytes_written']), '{:.1f}')} | "
            f"{r['io_rchar'] / MIB:.1f} | {r['io_wchar'] / MIB:.1f} | {check} |")


def _vs_tf(doc: dict) -> list[str]:
    lines = ["", "## warmstart stream vs TensorFlow", "",
             "`total`: graph build + savers/initializer ops + session + init + restore + save (imports excluded); "
             "`core`: session + init + restore + save only. `x faster` = TF wall / `ws-stream` wall, from the best "
             "(fastest) run of each, and from the medians in brackets. `n` = TF runs (a TF method is repeated only "
             "while its runs take < --tf-repeat-max-s).", "",
             "| set | sel | ws-stream s (best / median) | tf-restore-save n | total s | core s | x faster (total) | "
             "x faster (core) | tf-init-from-ckpt total s | x faster (total) | ws-restore s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in doc["summary"].values():
        ms = s["methods"]
        ws = ms.get("ws-stream")
        if not ws or ws["status"] != "ok":
            continue
        cells = [s["set"], f"{s['selection']}%", f"{ws['wall_min_s']:.3f} / {ws['wall_s']:.3f}"]
        t = ms.get("tf-restore-save")
        if t and t["status"] == "ok":
            cells += [str(t["n"]), f"{t['wall_min_s']:.2f}", _f(t.get("core_min_s"), "{:.2f}"),
                      f"{ws_vs_tf(s, 'tf-restore-save', 'total'):.1f}x ({ws_vs_tf(s, 'tf-restore-save', 'total', False):.1f}x)",
                      f"{_f(ws_vs_tf(s, 'tf-restore-save', 'core'), '{:.1f}x')} "
                      f"({_f(ws_vs_tf(s, 'tf-restore-save', 'core', False), '{:.1f}x')})"]
        else:
            cells += ["", "n/a", "", "", ""]
        t = ms.get("tf-init-from-ckpt")
        if t and t["status"] == "ok":
            cells += [f"{t['wall_min_s']:.2f}", f"{ws_vs_tf(s, 'tf-init-from-ckpt', 'total'):.1f}x "
                                                f"({ws_vs_tf(s, 'tf-init-from-ckpt', 'total', False):.1f}x)"]
        else:
            cells += ["n/a", ""]
        r = ms.get("ws-restore")
        cells.append(f"{r['wall_min_s']:.2f}" if r and r["status"] == "ok" else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _phases_and_failures(doc: dict) -> list[str]:
    lines = []
    phases = [(k, meth, r["phases"]) for k, s in doc["summary"].items() for meth, r in s["methods"].items()
              if r.get("status") == "ok" and r.get("phases")]
    if phases:
        lines += ["", "TF phase timings (s, median):", ""]
        for k, meth, ph in phases:
            lines.append(f"- {k} {meth}: " + ", ".join(f"{n} {v:.2f}" for n, v in ph.items()))
    na = [(k, meth, r["error"]) for k, s in doc["summary"].items() for meth, r in s["methods"].items()
          if r["status"] != "ok"]
    if na:
        lines += ["", "Methods reported n/a:", ""]
        lines += [f"- {k} {meth}: {_md(err)[:500]}" for k, meth, err in na]
    return lines


def _s3(doc: dict) -> list[str]:
    lines = ["", "## S3 (moto server behind a counting HTTP proxy; template and output local)", ""]
    if not doc["s3"]:
        return lines + ["not run (pass `--s3`)"]
    lines += ["| set | sel | wall s | peak RSS MiB | requests | by method | served MiB | selected MiB | "
              "index KiB | served / (selected + index) | check |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in doc["s3"]:
        r = e["result"]
        lines.append(
            f"| {e['set']} | {e['selection']}% ({e['selected_tensors']}) | {_f(r.get('wall_s'))} | "
            f"{_f(r.get('peak_rss_kib') and r['peak_rss_kib'] / 1024, '{:.0f}')} | {e['requests']} | "
            f"{_md(json.dumps(e['by_method']))} | {e['served_bytes'] / MIB:.2f} | {e['selected_bytes'] / MIB:.2f} | "
            f"{e['index_bytes'] / 1024:.1f} | {_f(e['ratio'], '{:.3f}x')} | "
            f"{'ok' if e['verified'] else _md(r.get('error') or e['verify_note'])} |")
    return lines


def _targets(doc: dict) -> list[str]:
    lines = ["", "## Targets", "", "| target | verdict | detail |", "|---|---|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | **{t['verdict']}** | {_md(t['detail'])} |")
    return lines


def _profiles(doc: dict) -> list[str]:
    if not doc["profiles"]:
        return []
    lines = ["", "## Where the time goes (one extra run under cProfile, 100% selection, top functions by own time)", ""]
    for name, pr in doc["profiles"].items():
        lines.append(f"- {name} (profiled wall {_f(pr.get('wall_s'))} s): " + "; ".join(
            f"`{_md(r['function'])}` {r['tottime_s']:.3f} s / {r['calls']} calls" for r in pr["top"][:8]))
    return lines


# --------------------------------------------------------------------------- machine description


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "warmstart"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        git += " + uncommitted engine changes" if dirty else ""
    except OSError:
        git = "unknown"
    try:
        fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "--target", str(HERE)], capture_output=True,
                            text=True).stdout.strip()
    except OSError:
        fs = "unknown"
    tf = _version("tensorflow-cpu")
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "tensorflow": tf if tf != "absent" else _version("tensorflow"),
            "warmstart": _version("warmstart"), "numpy": _version("numpy"), "fsspec": _version("fsspec"),
            "git": git or "unknown", "fs": fs or "unknown"}


def command_line() -> str:
    script = os.path.relpath(sys.argv[0], REPO) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    return "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])


def disk_free(path: Path) -> str:
    usage = shutil.disk_usage(path)
    return f"{usage.free / GIB:.1f} GiB free on its disk"
