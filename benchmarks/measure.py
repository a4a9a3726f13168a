"""Taking the measurements: the method names, the job each method gets for a selection
(``jobs_for``), one measurement in a fresh child process (``run_child``, with the CPU that other
processes used meanwhile), the check of its output (``verify_output``), the rounds of every method on
one set (``measure_set``: warm-up, interleaved repeats, summaries, cProfile runs), the medians and
floor ratios of a selection's runs (``summarize``, ``floor_ref``), and the S3 runs (``run_s3``).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import MIB, rules_for, selected
from layout import HERE, REPO, Layout, child_env, log

METHODS = ("floor", "floor-copyfile", "floor-output", "ws-stream", "ws-stream-sig", "ws-restore", "ws-assign",
           "tf-restore-save", "tf-init-from-ckpt")
TF_METHODS = ("ws-restore", "ws-assign", "tf-restore-save", "tf-init-from-ckpt")
FULL_OUTPUT = ("ws-stream", "ws-restore", "ws-assign", "tf-restore-save", "tf-init-from-ckpt", "floor-output")
STREAMS = ("ws-stream", "ws-stream-sig")


# --------------------------------------------------------------------------- running one measurement


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
                              text=True, timeout=timeout, env=child_env(), cwd=str(REPO))
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


# --------------------------------------------------------------------------- every method on one set


def measure_set(args, work: Path, name: str, layout: Layout, methods: list[str], selections: list[int],
                doc: dict) -> None:
    """Warm the set up, measure each selection (runs into ``doc["runs"]``, medians into
    ``doc["summary"]``), then the cProfile runs (into ``doc["profiles"]``)."""
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
        per_method = _run_rounds(args, work, name, layout, methods, sel, chosen, doc["runs"])
        summ = {m: summarize(rs) for m, rs in per_method.items() if rs}
        sel_bytes = sum(layout.source_entry(n).size for n in chosen)
        _add_floor_ratios(summ, sel)
        doc["summary"][f"{name}/{sel}"] = {"set": name, "selection": sel, "selected_tensors": len(chosen),
                                           "selected_bytes": sel_bytes, "model_bytes": layout.model_bytes,
                                           "methods": summ}
    for pm in [] if args.no_profile else [m for m in args.profile_methods.split(",") if m]:
        _profile(args, work, name, layout, pm, doc["profiles"])


def _run_rounds(args, work: Path, name: str, layout: Layout, methods: list[str], sel: int, chosen: list[str],
                runs: list[dict]) -> dict[str, list]:
    """The repeats of every method on one selection, interleaved (round-robin)."""
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
            res = _run_once(args, work, name, layout, m, sel, chosen, rep)
            if res is None:
                continue
            per_method[m].append(res)
            runs.append(res)
    return per_method


def _run_once(args, work: Path, name: str, layout: Layout, m: str, sel: int, chosen: list[str],
              rep: int) -> dict | None:
    output = work / "out" / f"{name}-{sel}-{m}"
    shutil.rmtree(output, ignore_errors=True)
    job = jobs_for(layout, m, sel, output, chosen)
    if job is None:
        return None
    os.sync()  # earlier outputs' writeback must not overlap this measurement
    res = run_child(job, work / "jobs", args.timeout)
    if res.get("status") == "ok":
        res["verified"], res["verify_note"] = verify_output(layout, m, output, chosen)
    shutil.rmtree(output, ignore_errors=True)
    res.update({"set": name, "selection": sel, "repeat": rep})
    msg = (f"wall {res['wall_s']:.3f} s, peak RSS {res['peak_rss_kib'] / 1024:.0f} MiB"
           if res.get("status") == "ok" else f"n/a: {res.get('error', '')[:200]}")
    key = f"{name}/{sel}"
    log(f"[bench] {key:<12} {m:<18} #{rep + 1}: {msg}")
    return res


def _profile(args, work: Path, name: str, layout: Layout, pm: str, profiles: dict) -> None:
    """One extra run of ``pm`` under cProfile on the 100% selection (not timed in the tables)."""
    output = work / "out" / f"{name}-profile-{pm}"
    job = jobs_for(layout, pm, 100, output, layout.targets)
    if job is None:
        return
    job["profile"] = True
    res = run_child(job, work / "jobs", args.timeout)
    shutil.rmtree(output, ignore_errors=True)
    profiles[f"{name} {pm}"] = {"wall_s": res.get("wall_s"), "status": res.get("status"),
                                "top": res.get("profile", []), "error": res.get("error")}


# --------------------------------------------------------------------------- summaries


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


def _add_floor_ratios(summ: dict, sel: int) -> None:
    for m, s in summ.items():
        ref = floor_ref(summ, m, sel)
        ref_min = floor_ref(summ, m, sel, "wall_min_s")
        s["floor_ref_s"], s["floor_ref_min_s"] = ref, ref_min
        s["x_floor"] = s["wall_s"] / ref if s["status"] == "ok" and ref else None
        s["x_floor_min"] = s["wall_min_s"] / ref_min if s["status"] == "ok" and ref_min else None


def contention(runs: list[dict]) -> dict:
    """How much of the machine other processes used during the runs (``other_cpu_share``)."""
    shares = sorted(r.get("other_cpu_share", 0) for r in runs)
    return {"runs": len(shares), "median": statistics.median(shares) if shares else 0,
            "max": shares[-1] if shares else 0, "over_10": sum(1 for x in shares if x > 0.10)}


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
                results.append(_s3_run(work, name, layout, sel, f"{bucket}/{name}/src/model.ckpt", options,
                                       proxy, timeout))
    finally:
        proxy.stop()
        server.stop()
    return results


def _s3_run(work: Path, name: str, layout: Layout, sel: int, source: str, options: dict, proxy,
            timeout: float) -> dict:
    """One ``ws-stream`` from S3 (through the counting proxy) into a local output."""
    chosen = selected(layout.targets, sel)
    sel_bytes = sum(layout.source_entry(n).size for n in chosen)
    output = work / "out" / f"s3-{name}-{sel}"
    shutil.rmtree(output, ignore_errors=True)
    layout.warm_up()
    os.sync()
    proxy.reset()
    job = {"method": "ws-stream", "source": source,
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
    log(f"[s3] {name} {sel}%: {res.get('status')} wall {res.get('wall_s')} s, "
        f"{counts['requests']} requests {counts['by_method']}, served {counts['body_bytes'] / MIB:.2f} MiB "
        f"for {sel_bytes / MIB:.2f} MiB selected + {layout.src_index_bytes / 1024:.1f} KiB index")
    return entry
