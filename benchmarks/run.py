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
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _common import MIB, SELECTIONS, rules_for, selected, set_tensors, source_name  # noqa: E402

import warmstart.strategies.stream as _stream  # noqa: E402  (no TensorFlow import)

GIB = 1024 * MIB
CHUNK_MIB = _stream.DEFAULT_CHUNK_BYTES // MIB  # the 'large' tensor must be larger than this
METHODS = ("floor", "floor-copyfile", "floor-output", "ws-stream", "ws-stream-sig", "ws-restore", "ws-assign",
           "tf-restore-save", "tf-init-from-ckpt")
TF_METHODS = ("ws-restore", "ws-assign", "tf-restore-save", "tf-init-from-ckpt")
FULL_OUTPUT = ("ws-stream", "ws-restore", "ws-assign", "tf-restore-save", "tf-init-from-ckpt", "floor-output")
STREAMS = ("ws-stream", "ws-stream-sig")

TARGET_FLOOR_RATIO = 1.25
TARGET_TF_SPEEDUP = 5.0
TARGET_RSS_MIB = 150
TARGET_S3_RATIO = 1.1
TARGET_LINEAR_DEV = 0.15


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- fixtures


def fixture_specs(args) -> dict[str, dict]:
    large_mib = args.large_mib or max(args.size_mib // 4, 2 * CHUNK_MIB)
    specs = {
        "small": {"count": args.small_count, "shape": [256], "seed": 11},
        "medium": {"count": max(1, args.size_mib // 8), "shape": [2048, 1024], "seed": 21},
        "large": {"count": 1, "shape": [large_mib * 256, 1024], "seed": 31},
    }
    return {k: v for k, v in specs.items() if k in args.sets}


def describe(name: str, spec: dict) -> str:
    nbytes = 4
    for d in spec["shape"]:
        nbytes *= d
    each = f"{nbytes / MIB:g} MiB" if nbytes >= MIB else f"{nbytes / 1024:g} KiB"
    return f"{name}: {spec['count']} x {each} float32 ({spec['count'] * nbytes / MIB:.1f} MiB)"


def ensure_fixtures(work: Path, specs: dict[str, dict], timeout: float) -> dict[str, dict]:
    """Reuse each set whose ``fixture.json`` holds the same spec; (re)write the others in one process."""
    root = work / "fixtures"
    infos, missing = {}, {}
    for name, spec in specs.items():
        marker = root / name / "fixture.json"
        if marker.exists():
            info = json.loads(marker.read_text())
            if info.get("spec") == spec:
                log(f"[fixtures] {name}: reusing {root / name}")
                infos[name] = {**info, "reused": True}
                continue
        if (root / name).exists():
            shutil.rmtree(root / name)  # parameters changed: never keep two versions of a set on disk
        (root / name).mkdir(parents=True)
        missing[name] = spec
    if missing:
        log("[fixtures] writing " + "; ".join(describe(n, s) for n, s in missing.items()) + f" into {root} ...")
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "fixtures.py"), str(root), json.dumps(missing)],
                              capture_output=True, text=True, timeout=timeout, env=_child_env())
        if proc.returncode != 0:
            for name in missing:
                shutil.rmtree(root / name, ignore_errors=True)
            raise SystemExit(f"writing fixtures failed:\n{proc.stderr[-4000:]}")
        for name in missing:
            infos[name] = {**json.loads((root / name / "fixture.json").read_text()), "reused": False}
        log(f"[fixtures] done in {time.perf_counter() - t:.1f} s: " + "; ".join(
            f"{n}: {infos[n]['times']}" for n in missing))
    return {name: infos[name] for name in specs}


class Layout:
    """Where each tensor's bytes are in the source and the template (from their indexes)."""

    def __init__(self, set_dir: Path, spec: dict):
        from warmstart.formats.bundle import BundleReader

        self.dir = set_dir
        self.src_prefix = str(set_dir / "src" / "model.ckpt")
        self.tmpl_prefix = str(set_dir / "tmpl" / "model.ckpt")
        self.meta = str(set_dir / "target.meta")
        self.signature = str(set_dir / "signature.json")
        self.src = BundleReader(self.src_prefix)
        self.tmpl = BundleReader(self.tmpl_prefix)
        self.src_data = self.src.data_location(0).path
        self.tmpl_data = self.tmpl.data_location(0).path
        self.tensors = set_tensors(spec)
        self.targets = [n for n, _ in self.tensors]
        self.model_bytes = sum(self.tmpl.records[n].stored_bytes for n in self.targets)
        self.src_index_bytes = os.path.getsize(self.src_prefix + ".index")
        self.files = [str(p) for d in ("src", "tmpl") for p in sorted((set_dir / d).iterdir())]

    def source_entry(self, target: str):
        return self.src.records[source_name(target)].entry

    def ranges(self, names: list[str], which: str) -> list[tuple[str, int, int]]:
        reader, path = (self.src, self.src_data) if which == "src" else (self.tmpl, self.tmpl_data)
        spans = sorted(
            (reader.records[source_name(n) if which == "src" else n].entry.offset,
             reader.records[source_name(n) if which == "src" else n].entry.size) for n in names)
        merged: list[list[int]] = []
        for off, size in spans:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1][1] += size
            else:
                merged.append([off, size])
        return [(path, off, size) for off, size in merged]

    def warm_up(self) -> float:
        """Read every fixture file once so that all measurements run with a warm page cache."""
        t = time.perf_counter()
        buf = bytearray(16 * MIB)
        for path in self.files:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        return time.perf_counter() - t


# --------------------------------------------------------------------------- running one measurement


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs; /proc/stat, USER_HZ = 100)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_child(job: dict, jobs_dir: Path, timeout: float) -> dict:
    jobs_dir.mkdir(parents=True, exist_ok=True)
    job_file = jobs_dir / "job.json"
    job_file.write_text(json.dumps(job))
    busy0, own0 = _machine_busy_s(), _children_cpu_s()
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / "methods.py"), str(job_file)], capture_output=True,
                              text=True, timeout=timeout, env=_child_env(), cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"method": job["method"], "status": "error", "error": f"timeout after {timeout:.0f} s",
                "process_s": round(time.perf_counter() - t, 3)}
    process_s = time.perf_counter() - t
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("BENCH-RESULT ")), None)
    if line is None:
        return {"method": job["method"], "status": "error", "process_s": round(process_s, 3),
                "error": f"child exited {proc.returncode} without a result: {proc.stderr.strip()[-1500:]}"}
    result = json.loads(line[len("BENCH-RESULT "):])
    # CPU that other processes (other users of the machine; in --s3 runs also the moto server and the
    # proxy in this driver) used while the child ran: a measurement taken on a busy machine is suspect.
    other = max(0.0, (_machine_busy_s() - busy0) - (_children_cpu_s() - own0))
    result["other_cpu_s"] = round(other, 2)
    result["other_cpu_share"] = round(other / (process_s * (os.cpu_count() or 1)), 3)
    result["process_s"] = round(process_s, 3)
    result["startup_and_exit_s"] = round(process_s - result.get("child_s", 0.0), 3)
    return result


def verify_output(layout: Layout, method: str, output: Path, chosen: list[str]) -> tuple[bool | None, str]:
    """Compare the output's index with the inputs' CRCs: selected tensors must carry the source's
    bytes (same CRC32C); for warmstart's template target, the others the template's."""
    if method.startswith("floor"):
        return None, "no index (raw bytes)"
    from warmstart.formats.bundle import BundleReader

    try:
        out = BundleReader(str(output))
    except Exception as exc:  # noqa: BLE001
        return False, f"output unreadable: {exc}"
    expected = set(chosen) if method == "ws-stream-sig" else set(layout.targets)
    if set(out.records) != expected:
        return False, f"output has {len(out.records)} tensors, expected {len(expected)}"
    chosen_set = set(chosen)
    bad = [n for n in chosen if out.records[n].entry.crc32c != layout.source_entry(n).crc32c]
    if method == "ws-stream":
        bad += [n for n in layout.targets
                if n not in chosen_set and out.records[n].entry.crc32c != layout.tmpl.records[n].entry.crc32c]
    if bad:
        return False, f"{len(bad)} tensors with unexpected bytes, e.g. {bad[0]}"
    return True, f"{len(chosen)} copied tensors match the source CRC32C"


# --------------------------------------------------------------------------- S3


def run_s3(args, work: Path, layouts: dict[str, Layout], timeout: float) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from s3proxy import CountingProxy
    from servers import S3Server, upload_dir

    results = []
    server = S3Server().start()
    proxy = CountingProxy(server.host, server.port).start()
    try:
        bucket = server.make_bucket("warmstart-bench")
        fs = server.filesystem()
        options = server.storage_options()
        options = {**options, "client_kwargs": {**options["client_kwargs"], "endpoint_url": proxy.endpoint_url}}
        for name in ("small", "medium"):
            if name not in layouts:
                continue
            layout = layouts[name]
            t = time.perf_counter()
            upload_dir(fs, layout.dir / "src", f"{bucket}/{name}/src")
            log(f"[s3] uploaded {name} source to moto in {time.perf_counter() - t:.1f} s")
            for sel in args.s3_selections:
                chosen = selected(layout.targets, sel)
                sel_bytes = sum(layout.source_entry(n).size for n in chosen)
                output = work / "out" / f"s3-{name}-{sel}"
                shutil.rmtree(output, ignore_errors=True)
                layout.warm_up()
                os.sync()
                proxy.reset()
                job = {"method": "ws-stream", "source": f"{bucket}/{name}/src/model.ckpt",
                       "template": layout.tmpl_prefix, "output": str(output), "rules": rules_for(sel),
                       "storage_options": options, "preimport": ["s3fs"]}
                res = run_child(job, work / "jobs", timeout)
                counts = proxy.snapshot()
                ok, why = verify_output(layout, "ws-stream", output, chosen) if res.get("status") == "ok" else (False, "")
                shutil.rmtree(output, ignore_errors=True)
                bound = sel_bytes + layout.src_index_bytes
                entry = {
                    "set": name, "selection": sel, "selected_tensors": len(chosen), "selected_bytes": sel_bytes,
                    "index_bytes": layout.src_index_bytes, "served_bytes": counts["body_bytes"],
                    "ratio": counts["body_bytes"] / bound if bound else None, "requests": counts["requests"],
                    "by_method": counts["by_method"], "ranged_gets": counts["ranged_gets"],
                    "result": res, "verified": ok, "verify_note": why,
                    "log_head": counts["log"][:8],
                }
                results.append(entry)
                log(f"[s3] {name} {sel}%: {res.get('status')} wall {res.get('wall_s')} s, "
                    f"{counts['requests']} requests {counts['by_method']}, served {counts['body_bytes'] / MIB:.2f} MiB "
                    f"for {sel_bytes / MIB:.2f} MiB selected + {layout.src_index_bytes / 1024:.1f} KiB index")
    finally:
        proxy.stop()
        server.stop()
    return results


# --------------------------------------------------------------------------- the benchmark


def jobs_for(layout: Layout, method: str, sel: int, output: Path, chosen: list[str]) -> dict | None:
    chosen_set = set(chosen)
    rest = [n for n in layout.targets if n not in chosen_set]
    sel_bytes = sum(layout.source_entry(n).size for n in chosen)
    job = {"method": method, "output": str(output), "source": layout.src_prefix, "template": layout.tmpl_prefix,
           "meta": layout.meta, "signature": layout.signature, "rules": rules_for(sel), "selected_bytes": sel_bytes}
    if method == "floor":
        job["ranges"] = layout.ranges(chosen, "src")
    elif method == "floor-copyfile":
        if sel != 100:
            return None
        job["copy_from"] = layout.src_data
    elif method == "floor-output":
        if sel == 100:
            return None
        job["ranges"] = layout.ranges(chosen, "src") + layout.ranges(rest, "tmpl")
    elif method in ("tf-restore-save", "tf-init-from-ckpt"):
        job["tensors"] = layout.tensors
        job["selected"] = chosen
    return job


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        err = runs[0].get("error", "failed") if runs else "not run"
        return {"status": "n/a", "error": err, "n": len(runs)}
    walls = [r["wall_s"] for r in ok]
    out = {
        "status": "ok", "n": len(ok), "wall_s": statistics.median(walls), "wall_min_s": min(walls),
        "wall_max_s": max(walls), "import_s": statistics.median(r["import_s"] for r in ok),
        "startup_and_exit_s": statistics.median(r.get("startup_and_exit_s", 0) for r in ok),
        "peak_rss_mib": max(r["peak_rss_kib"] for r in ok) / 1024,
        "rss_after_import_mib": max(r["rss_after_import_kib"] for r in ok) / 1024,
        "bytes_read": ok[0].get("bytes_read"), "bytes_written": ok[0].get("bytes_written"),
        "io_rchar": statistics.median(r["io"]["rchar"] for r in ok),
        "io_wchar": statistics.median(r["io"]["wchar"] for r in ok),
        "io_syscr": statistics.median(r["io"]["syscr"] for r in ok),
        "io_syscw": statistics.median(r["io"]["syscw"] for r in ok),
        "cpu_user_s": statistics.median(r.get("cpu", {}).get("user_s", 0) for r in ok),
        "cpu_sys_s": statistics.median(r.get("cpu", {}).get("sys_s", 0) for r in ok),
        "minflt": statistics.median(r.get("cpu", {}).get("minflt", 0) for r in ok),
        "other_cpu_share_max": max(r.get("other_cpu_share", 0) for r in ok),
        "tf_imported": any(r.get("tf_imported") for r in ok),
        "verified": all(r.get("verified") is not False for r in ok),
        "verify_note": ok[0].get("verify_note"),
    }
    if any("phases" in r for r in ok):
        keys = ok[0].get("phases", {}).keys()
        out["phases"] = {k: statistics.median(r["phases"][k] for r in ok if "phases" in r) for k in keys}
        out["core_min_s"] = min(r["phases"]["core_s"] for r in ok if "core_s" in r.get("phases", {}))
    return out


def floor_ref(summ: dict, method: str, sel: int, stat: str = "wall_s") -> float | None:
    """The floor that writes the same output as ``method``: the selection alone (floor, or the
    faster of floor/floor-copyfile at 100%), or the selection plus the template's other tensors
    (floor-output) for methods whose output holds the whole model."""
    def wall(m):
        s = summ.get(m)
        return s[stat] if s and s["status"] == "ok" else None

    if sel == 100:
        walls = [w for w in (wall("floor"), wall("floor-copyfile")) if w is not None]
        return min(walls) if walls else None
    if method in FULL_OUTPUT:
        return wall("floor-output")
    return wall("floor")


def main(argv: list[str] | None = None) -> int:
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

    started = time.perf_counter()
    work = Path(args.work_dir).resolve()
    (work / "out").mkdir(parents=True, exist_ok=True)
    for stale in (work / "out").iterdir():
        shutil.rmtree(stale, ignore_errors=True)
    doc: dict = {"machine": machine(), "command": command_line(), "started": _dt.datetime.now(_dt.timezone.utc)
                 .strftime("%Y-%m-%d %H:%M:%S UTC"), "args": {k: v for k, v in vars(args).items()},
                 "sets": {}, "runs": [], "summary": {}, "s3": [], "profiles": {}}
    log(f"[bench] work dir {work} ({_disk_free(work)})")
    specs = fixture_specs(args)
    layouts: dict[str, Layout] = {}
    infos = ensure_fixtures(work, specs, args.timeout * 2)
    for name, spec in specs.items():
        info = infos[name]
        layout = Layout(work / "fixtures" / name, spec)
        layouts[name] = layout
        doc["sets"][name] = {"spec": spec, "description": describe(name, spec), "model_bytes": layout.model_bytes,
                             "source_index_bytes": layout.src_index_bytes, "fixture": info}

    for name, layout in layouts.items():
        warm = layout.warm_up()
        log(f"[bench] {name}: warm-up read of {len(layout.files)} fixture files in {warm:.2f} s")
        # One discarded copy of the whole model first: on this kind of VM the first big write after a
        # pause is the slowest (fresh guest memory is faulted in from the host; see README).
        output = work / "out" / f"{name}-warmup"
        run_child(jobs_for(layout, "floor", 100, output, layout.targets), work / "jobs", args.timeout)
        shutil.rmtree(output, ignore_errors=True)
        sels = [100] if len(layout.targets) < 10 else selections  # one tensor cannot be split 10/50/100
        sels = [s for s in sels if s in selections] or [100]
        for sel in sels:
            chosen = selected(layout.targets, sel)
            key = f"{name}/{sel}"
            per_method: dict[str, list] = {m: [] for m in methods}
            rounds = max(args.repeat, args.tf_repeat)
            for rep in range(rounds):
                for m in methods:
                    if rep >= (args.tf_repeat if m in TF_METHODS else args.repeat):
                        continue
                    prev = per_method[m][-1] if per_method[m] else None
                    if m in TF_METHODS and prev is not None and (
                            prev.get("status") != "ok" or prev.get("wall_s", 0) > args.tf_repeat_max_s):
                        continue  # a failed or slow TF method is not repeated: its noise is small next to it
                    output = work / "out" / f"{name}-{sel}-{m}"
                    shutil.rmtree(output, ignore_errors=True)
                    job = jobs_for(layout, m, sel, output, chosen)
                    if job is None:
                        continue
                    os.sync()  # earlier outputs' writeback must not overlap this measurement
                    res = run_child(job, work / "jobs", args.timeout)
                    if res.get("status") == "ok":
                        res["verified"], res["verify_note"] = verify_output(layout, m, output, chosen)
                    shutil.rmtree(output, ignore_errors=True)
                    res.update({"set": name, "selection": sel, "repeat": rep})
                    per_method[m].append(res)
                    doc["runs"].append(res)
                    msg = (f"wall {res['wall_s']:.3f} s, peak RSS {res['peak_rss_kib'] / 1024:.0f} MiB"
                           if res.get("status") == "ok" else f"n/a: {res.get('error', '')[:200]}")
                    log(f"[bench] {key:<12} {m:<18} #{rep + 1}: {msg}")
            summ = {m: summarize(rs) for m, rs in per_method.items() if rs}
            sel_bytes = sum(layout.source_entry(n).size for n in chosen)
            for m, s in summ.items():
                ref = floor_ref(summ, m, sel)
                ref_min = floor_ref(summ, m, sel, "wall_min_s")
                s["floor_ref_s"], s["floor_ref_min_s"] = ref, ref_min
                s["x_floor"] = s["wall_s"] / ref if s["status"] == "ok" and ref else None
                s["x_floor_min"] = s["wall_min_s"] / ref_min if s["status"] == "ok" and ref_min else None
            doc["summary"][key] = {"set": name, "selection": sel, "selected_tensors": len(chosen),
                                   "selected_bytes": sel_bytes, "model_bytes": layout.model_bytes, "methods": summ}
        for pm in [] if args.no_profile else [m for m in args.profile_methods.split(",") if m]:
            output = work / "out" / f"{name}-profile-{pm}"
            job = jobs_for(layout, pm, 100, output, layout.targets)
            if job is None:
                continue
            job["profile"] = True
            res = run_child(job, work / "jobs", args.timeout)
            shutil.rmtree(output, ignore_errors=True)
            doc["profiles"][f"{name} {pm}"] = {"wall_s": res.get("wall_s"), "status": res.get("status"),
                                               "top": res.get("profile", []), "error": res.get("error")}

    if args.s3:
        doc["s3"] = run_s3(args, work, layouts, args.timeout)

    shares = sorted(r.get("other_cpu_share", 0) for r in doc["runs"])
    doc["contention"] = {"runs": len(shares), "median": statistics.median(shares) if shares else 0,
                         "max": shares[-1] if shares else 0, "over_10": sum(1 for x in shares if x > 0.10)}
    doc["targets"] = check_targets(doc, layouts)
    doc["total_seconds"] = round(time.perf_counter() - started, 1)
    text = render(doc)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    json_out = Path(args.json_out) if args.json_out else out.parent / "results.json"
    json_out.write_text(json.dumps(doc, indent=1, default=str))
    log(f"[bench] wrote {out} and {json_out} in {doc['total_seconds']} s total ({_disk_free(work)})")
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.rmtree(work / "out", ignore_errors=True)
        shutil.rmtree(work / "jobs", ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- targets


def _ws_vs_tf(s: dict, tf_method: str, which: str, best: bool = True) -> float | None:
    """TF wall / ws-stream wall: ``which`` = total or core (TF without graph construction); ``best``:
    fastest run of each, else medians."""
    ws, tf = s["methods"].get("ws-stream"), s["methods"].get(tf_method)
    if not ws or not tf or ws["status"] != "ok" or tf["status"] != "ok":
        return None
    if which == "total":
        tf_wall = tf["wall_min_s"] if best else tf["wall_s"]
    else:
        tf_wall = tf.get("core_min_s") if best else tf.get("phases", {}).get("core_s")
    ws_wall = ws["wall_min_s"] if best else ws["wall_s"]
    return tf_wall / ws_wall if tf_wall else None


def _tf_batch_bytes() -> int:
    from warmstart.strategies import BATCH_BYTES  # imports no TensorFlow until used

    return BATCH_BYTES


def check_targets(doc: dict, layouts: dict) -> list[dict]:
    targets = []
    big = [k for k, s in doc["summary"].items() if s["model_bytes"] >= GIB]

    def verdict(values: list[bool]) -> str:
        return "PASS" if values and all(values) else ("FAIL" if values else "n/a")

    # 1. stream within 1.25x of the byte-copy floor, at >= 1 GiB. Judged on the best run of each
    #    (fastest ws-stream / fastest floor): single runs here vary by up to 5x for reasons outside
    #    both (see README, "this machine's memory"); medians are shown alongside.
    rows = []
    for k in big:
        ms = doc["summary"][k]["methods"]
        ws = ms.get("ws-stream")
        if ws and ws.get("x_floor_min") is not None:
            py = ms.get("floor")
            py_ratio = (ws["wall_min_s"] / py["wall_min_s"]) if doc["summary"][k]["selection"] == 100 and py \
                and py["status"] == "ok" else None
            rows.append((k, ws["x_floor_min"], ws["x_floor"], py_ratio))
    targets.append({"target": f"stream <= {TARGET_FLOOR_RATIO}x byte-copy floor (sets >= 1 GiB; best run of each)",
                    "verdict": verdict([r <= TARGET_FLOOR_RATIO for _, r, _, _ in rows]) if big else "n/a",
                    "detail": ", ".join(
                        f"{k}: {r:.2f}x (medians: {rm:.2f}x" + (f"; vs the Python read/write floor instead of "
                                                               f"copyfile: {py:.2f}x" if py else "") + ")"
                        for k, r, rm, py in rows) or "no set >= 1 GiB (use --size-mib 1024)"})
    # 2. >= 5x faster than TF restore+save, at >= 1 GiB: total (graph build + restore + save) and core only
    for which, label in (("total", "graph build + init + restore + save"), ("core", "session + init + restore + save only")):
        rows = [(k, _ws_vs_tf(doc["summary"][k], "tf-restore-save", which),
                 _ws_vs_tf(doc["summary"][k], "tf-restore-save", which, best=False)) for k in big]
        rows = [(k, r, rm) for k, r, rm in rows if r is not None]
        targets.append({"target": f"stream >= {TARGET_TF_SPEEDUP:g}x faster than TF1 restore+save ({label}; sets >= 1 GiB; "
                                  "best run of each)",
                        "verdict": verdict([r >= TARGET_TF_SPEEDUP for _, r, _ in rows]) if big else "n/a",
                        "detail": ", ".join(f"{k}: {r:.1f}x (medians: {rm:.1f}x)" for k, r, rm in rows)
                        or "no set >= 1 GiB"})
    # 3. peak RSS <= 150 MiB, every stream run at every size; S3-source runs judged separately (their
    #    process also holds s3fs/aiobotocore, whose import alone is reported as "RSS after import")
    rss = [(f"{k} {m}", s["methods"][m]["peak_rss_mib"]) for k, s in doc["summary"].items() for m in STREAMS
           if m in s["methods"] and s["methods"][m]["status"] == "ok"]
    s3rss = [(f"s3 {e['set']}/{e['selection']}", e["result"]["peak_rss_kib"] / 1024,
              e["result"]["rss_after_import_kib"] / 1024) for e in doc["s3"] if e["result"].get("status") == "ok"]
    worst = max(rss, key=lambda x: x[1]) if rss else None
    targets.append({"target": f"stream peak RSS <= {TARGET_RSS_MIB} MiB at every size (local files; whole process)",
                    "verdict": verdict([v <= TARGET_RSS_MIB for _, v in rss]),
                    "detail": f"max {worst[1]:.0f} MiB ({worst[0]}) over {len(rss)} measured cases" if worst else ""})
    if doc["s3"]:
        worst = max(s3rss, key=lambda x: x[1]) if s3rss else None
        targets.append({"target": f"stream peak RSS <= {TARGET_RSS_MIB} MiB, source on S3 (whole process)",
                        "verdict": verdict([v <= TARGET_RSS_MIB for _, v, _ in s3rss]),
                        "detail": (f"max {worst[1]:.0f} MiB ({worst[0]}), of which {worst[2]:.0f} MiB already after "
                                   "importing warmstart + s3fs") if worst else ""})
    # 4. S3 partial reads
    s3rows = [e for e in doc["s3"] if e["selection"] == 10]
    targets.append({"target": f"10% from S3 reads <= {TARGET_S3_RATIO}x (selected bytes + index)",
                    "verdict": verdict([e["ratio"] <= TARGET_S3_RATIO for e in s3rows if e["ratio"] is not None]
                                       + [e["result"].get("status") == "ok" for e in s3rows])
                    if s3rows else "not run (--s3)",
                    "detail": ", ".join(f"{e['set']}: {e['ratio']:.3f}x, {e['requests']} requests" for e in s3rows)})
    # 5. linear in selected bytes: ws-stream-sig writes only the selection
    rows, verdicts = [], []
    for name in layouts:
        pts = {}
        for sel in (10, 50, 100):
            s = doc["summary"].get(f"{name}/{sel}")
            m = s and s["methods"].get("ws-stream-sig")
            if m and m["status"] == "ok":
                pts[sel] = (s["selected_bytes"], m["wall_s"], m["bytes_read"])
        if len(pts) < 3 or pts[100][0] == pts[10][0]:
            continue
        (s10, t10, r10), (s50, t50, r50), (s100, t100, r100) = pts[10], pts[50], pts[100]
        predicted = t10 + (t100 - t10) * (s50 - s10) / (s100 - s10)
        dev = abs(t50 - predicted) / t100
        intercept = t10 - (t100 - t10) * s10 / (s100 - s10)
        reads_exact = (r10, r50, r100) == (s10, s50, s100)
        verdicts.append(dev <= TARGET_LINEAR_DEV and reads_exact)
        rows.append(f"{name}: walls {t10:.3f}/{t50:.3f}/{t100:.3f} s for {s10 / MIB:.1f}/{s50 / MIB:.1f}/"
                    f"{s100 / MIB:.1f} MiB; 50% point off the 10%-100% line by {dev:.1%} of t100; fixed cost "
                    f"~{intercept:.3f} s; bytes read == selected bytes: {reads_exact}")
    targets.append({"target": f"cost linear in selected bytes (ws-stream-sig; 50% point within {TARGET_LINEAR_DEV:.0%} "
                              "of the line, bytes read == selected)",
                    "verdict": verdict(verdicts), "detail": "; ".join(rows) or "needs the 10/50/100 selections"})
    # 6. restore/assign hold one copy of the model: TF's own restore+save holds exactly that (the
    #    variables), so warmstart may add only its batches in flight (read bytes + the fed tensor).
    allowance = 2 * _tf_batch_bytes() / MIB
    rows, verdicts = [], []
    for k in big:
        ms = doc["summary"][k]["methods"]
        tf_run = ms.get("tf-restore-save")
        if not tf_run or tf_run["status"] != "ok":
            continue
        for m in ("ws-restore", "ws-assign"):
            r = ms.get(m)
            if r and r["status"] == "ok":
                extra = r["peak_rss_mib"] - tf_run["peak_rss_mib"]
                verdicts.append(extra <= allowance)
                rows.append(f"{k} {m}: {r['peak_rss_mib']:.0f} MiB vs TF {tf_run['peak_rss_mib']:.0f} MiB ({extra:+.0f})")
    targets.append({"target": f"restore/assign hold one copy of the model (peak RSS at most TF1 restore+save's + "
                              f"{allowance:.0f} MiB of batches; sets >= 1 GiB)",
                    "verdict": verdict(verdicts), "detail": "; ".join(rows) or "needs ws-restore/ws-assign and TF runs"})
    return targets


# --------------------------------------------------------------------------- rendering


def _f(v, fmt="{:.3f}", na="n/a") -> str:
    return na if v is None else fmt.format(v)


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# warmstart benchmark results", "",
             f"- date: {doc['started']}; total run time {doc.get('total_seconds', '?')} s",
             f"- command: `{doc['command']}`",
             f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:.1f} GiB RAM, {m['os']}; work dir on {m['fs']}",
             f"- python {m['python']}, tensorflow {m['tensorflow']}, warmstart {m['warmstart']} "
             f"(git {m['git']}), numpy {m['numpy']}, fsspec {m['fsspec']}",
             "- every number is one fresh process per run, warm page cache (each set's files read once "
             "before its runs), TF/warmstart import time excluded from `wall` and shown separately; "
             "`wall` is the median of the runs (`n`), `peak RSS` the max, whole process, imports included.",
             f"- other processes' CPU during the measurements: median {doc.get('contention', {}).get('median', 0):.0%}, "
             f"max {doc.get('contention', {}).get('max', 0):.0%} of the machine "
             f"({doc.get('contention', {}).get('over_10', 0)} of {doc.get('contention', {}).get('runs', 0)} runs above 10%)",
             "", "## Fixture sets", ""]
    for name, s in doc["sets"].items():
        fx = s["fixture"]
        lines.append(f"- **{s['description']}**, source index {s['source_index_bytes'] / 1024:.1f} KiB; "
                     f"fixture {'reused' if fx.get('reused') else 'written'} ({fx.get('times')})")
    lines += ["", "## Results", "",
              "`x floor`: wall / the byte-copy floor that writes the same output (see README). "
              "`read`/`written`: the engine's Report (warmstart) or computed from the selection (others); "
              "`rchar`/`wchar`: bytes through read()/write() syscalls (`/proc/self/io`); `user`/`sys`: CPU seconds "
              "of the method (median; user + sys well below wall means waiting); `others' CPU`: the largest share of the "
              "machine's CPU that other processes used during a run of this row (the machine is shared: a high value "
              "marks a suspect measurement).", ""]
    head = ("| set | sel | method | n | wall s | min s | x floor | x floor (min) | import s | peak RSS MiB | RSS after import MiB | "
            "user s | sys s | others' CPU | read MiB | written MiB | rchar MiB | wchar MiB | check |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for key, s in doc["summary"].items():
        for meth, r in s["methods"].items():
            sel = f"{s['selection']}% ({s['selected_tensors']}, {s['selected_bytes'] / MIB:.1f} MiB)"
            if r["status"] != "ok":
                lines.append(f"| {s['set']} | {sel} | {meth} | {r['n']} | n/a | | | | | | | | | | | | | | "
                             f"{_md(r['error'])[:300]} |")
                continue
            check = "" if r["verified"] is None else ("ok" if r["verified"] else "MISMATCH: " + str(r.get("verify_note")))
            lines.append(
                f"| {s['set']} | {sel} | {meth} | {r['n']} | {r['wall_s']:.3f} | {r['wall_min_s']:.3f} | "
                f"{_f(r['x_floor'], '{:.2f}x')} | {_f(r['x_floor_min'], '{:.2f}x')} | "
                f"{r['import_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['rss_after_import_mib']:.0f} | "
                f"{r['cpu_user_s']:.2f} | {r['cpu_sys_s']:.2f} | {r['other_cpu_share_max']:.0%} | "
                f"{_f(_mib(r['bytes_read']), '{:.1f}')} | {_f(_mib(r['bytes_written']), '{:.1f}')} | "
                f"{r['io_rchar'] / MIB:.1f} | {r['io_wchar'] / MIB:.1f} | {check} |")
    lines += ["", "## warmstart stream vs TensorFlow", "",
              "`total`: graph build + savers/initializer ops + session + init + restore + save (imports excluded); "
              "`core`: session + init + restore + save only. `x faster` = TF wall / `ws-stream` wall, from the best "
              "(fastest) run of each, and from the medians in brackets. `n` = TF runs (a TF method is repeated only "
              "while its runs take < --tf-repeat-max-s).", "",
              "| set | sel | ws-stream s (best / median) | tf-restore-save n | total s | core s | x faster (total) | "
              "x faster (core) | tf-init-from-ckpt total s | x faster (total) | ws-restore s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in doc["summary"].items():
        ms = s["methods"]
        ws = ms.get("ws-stream")
        if not ws or ws["status"] != "ok":
            continue
        cells = [s["set"], f"{s['selection']}%", f"{ws['wall_min_s']:.3f} / {ws['wall_s']:.3f}"]
        t = ms.get("tf-restore-save")
        if t and t["status"] == "ok":
            cells += [str(t["n"]), f"{t['wall_min_s']:.2f}", _f(t.get("core_min_s"), "{:.2f}"),
                      f"{_ws_vs_tf(s, 'tf-restore-save', 'total'):.1f}x ({_ws_vs_tf(s, 'tf-restore-save', 'total', False):.1f}x)",
                      f"{_f(_ws_vs_tf(s, 'tf-restore-save', 'core'), '{:.1f}x')} "
                      f"({_f(_ws_vs_tf(s, 'tf-restore-save', 'core', False), '{:.1f}x')})"]
        else:
            cells += ["", "n/a", "", "", ""]
        t = ms.get("tf-init-from-ckpt")
        if t and t["status"] == "ok":
            cells += [f"{t['wall_min_s']:.2f}", f"{_ws_vs_tf(s, 'tf-init-from-ckpt', 'total'):.1f}x "
                                                f"({_ws_vs_tf(s, 'tf-init-from-ckpt', 'total', False):.1f}x)"]
        else:
            cells += ["n/a", ""]
        r = ms.get("ws-restore")
        cells.append(f"{r['wall_min_s']:.2f}" if r and r["status"] == "ok" else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
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
    lines += ["", "## S3 (moto server behind a counting HTTP proxy; template and output local)", ""]
    if doc["s3"]:
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
    else:
        lines.append("not run (pass `--s3`)")
    lines += ["", "## Targets", "", "| target | verdict | detail |", "|---|---|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | **{t['verdict']}** | {_md(t['detail'])} |")
    if doc["profiles"]:
        lines += ["", "## Where the time goes (one extra run under cProfile, 100% selection, top functions by own time)", ""]
        for name, pr in doc["profiles"].items():
            lines.append(f"- {name} (profiled wall {_f(pr.get('wall_s'))} s): " + "; ".join(
                f"`{_md(r['function'])}` {r['tottime_s']:.3f} s / {r['calls']} calls" for r in pr["top"][:8]))
    lines.append("")
    return "\n".join(lines)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _mib(v):
    return None if v is None else v / MIB


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


def _disk_free(path: Path) -> str:
    usage = shutil.disk_usage(path)
    return f"{usage.free / GIB:.1f} GiB free on its disk"


if __name__ == "__main__":
    sys.exit(main())
