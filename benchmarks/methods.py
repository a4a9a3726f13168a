"""One benchmark measurement in a fresh process (started by ``benchmarks/run.py``).

    python benchmarks/methods.py JOB_JSON_FILE

Runs exactly one method on one fixture selection and prints one line ``BENCH-RESULT {json}``:

* ``import_s``: from the first line of this file to the end of the imports the method needs
  (TensorFlow for TF-based methods; for the engine, every module of the wings a transfer runs in, which
  warmstart itself imports when first used); ``rss_after_import_kib`` is the
  peak RSS at that point;
* ``wall_s``: the method itself (``time.perf_counter``), imports excluded;
* ``peak_rss_kib``: the process's peak RSS (``VmHWM``), imports included. ``getrusage().ru_maxrss`` is
  also recorded but not used: Linux keeps it across ``execve``, so a child starts at its parent's RSS;
* ``io``: the change of ``/proc/self/io`` over the method (``rchar``/``wchar``: bytes through
  read()/write() syscalls, page-cache hits included; ``read_bytes``/``write_bytes``: block layer);
* ``bytes_read``/``bytes_written``: the engine's Report for warmstart methods; for the others, computed
  from the selection (reads) and the output's size on disk (writes);
* ``phases``: sub-timings where the method has phases (TF graph build, restore, save...).
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import build_tf1_graph, import_engine, proc_io, source_name, tree_size  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TF_METHODS = ("ws-restore", "ws-assign", "tf-restore-save", "tf-init-from-ckpt")
WS_METHODS = ("ws-stream", "ws-stream-sig", "ws-restore", "ws-assign")


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- floors (plain Python I/O)


def floor_ranges(job: dict) -> dict:
    """Copy the given byte ranges (already merged where adjacent) into one file, 16 MiB at a time."""
    chunk = 16 * 1024 * 1024
    buf = bytearray(chunk)
    view = memoryview(buf)
    files = {}
    total = 0
    os.makedirs(job["output"], exist_ok=True)
    try:
        with open(os.path.join(job["output"], "data"), "wb") as out:
            for path, offset, size in job["ranges"]:
                f = files.get(path)
                if f is None:
                    f = files[path] = open(path, "rb", buffering=0)
                f.seek(offset)
                left = size
                while left:
                    n = f.readinto(view[: min(chunk, left)])
                    if not n:
                        raise OSError(f"{path} ends before byte {offset + size}")
                    out.write(view[:n])
                    left -= n
                    total += n
    finally:
        for f in files.values():
            f.close()
    return {"bytes_read": total, "bytes_written": tree_size(job["output"])}


def floor_copyfile(job: dict) -> dict:
    import shutil

    os.makedirs(job["output"], exist_ok=True)
    shutil.copyfile(job["copy_from"], os.path.join(job["output"], "data"))
    return {"bytes_read": os.path.getsize(job["copy_from"]), "bytes_written": tree_size(job["output"])}


# --------------------------------------------------------------------------- warmstart


def ws_transfer(job: dict, target: str, strategy: str) -> dict:
    import warmstart

    report = warmstart.transfer(job["source"], target, job["output"], rules=job["rules"], strategy=strategy,
                                storage_options=job.get("storage_options"))
    return {"bytes_read": report.bytes_read, "bytes_written": report.bytes_written,
            "engine_seconds": round(report.seconds, 4), "strategy": report.strategy}


# --------------------------------------------------------------------------- TF baselines


def _graph(tf, job: dict, phases: dict):
    t = time.perf_counter()
    graph, variables = build_tf1_graph(tf, [tuple(x) for x in job["tensors"]])
    phases["graph_build_s"] = time.perf_counter() - t
    return graph, variables


def tf_restore_save(job: dict) -> dict:
    """TF1: fresh graph with the target variables; the unselected ones run their initializers, the
    selected ones are restored by ``Saver(var_list={source_name: variable})``; ``Saver.save`` writes all."""
    import tensorflow as tf

    phases: dict = {}
    graph, variables = _graph(tf, job, phases)
    chosen = set(job["selected"])
    t = time.perf_counter()
    with graph.as_default():
        restorer = tf.compat.v1.train.Saver(var_list={source_name(n): variables[n] for n in job["selected"]})
        saver = tf.compat.v1.train.Saver()
        rest = [v for n, v in variables.items() if n not in chosen]
        init_rest = tf.compat.v1.variables_initializer(rest) if rest else None
    phases["savers_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with tf.compat.v1.Session(graph=graph) as sess:
        phases["session_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if init_rest is not None:
            sess.run(init_rest)
        phases["init_s"] = time.perf_counter() - t
        t = time.perf_counter()
        restorer.restore(sess, job["source"])
        phases["restore_s"] = time.perf_counter() - t
        t = time.perf_counter()
        saver.save(sess, os.path.join(job["output"], "model.ckpt"), write_meta_graph=False)
        phases["save_s"] = time.perf_counter() - t
    phases["core_s"] = phases["session_s"] + phases["init_s"] + phases["restore_s"] + phases["save_s"]
    return {"bytes_read": job["selected_bytes"], "bytes_written": _ckpt_data_size(job["output"]), "phases": phases}


def tf_init_from_ckpt(job: dict) -> dict:
    """TF1: fresh graph; ``init_from_checkpoint({source_name: target_name})`` overrides the selected
    variables' initializers; ``global_variables_initializer`` runs; ``Saver.save`` writes all."""
    import tensorflow as tf

    phases: dict = {}
    graph, variables = _graph(tf, job, phases)
    t = time.perf_counter()
    with graph.as_default():
        tf.compat.v1.train.init_from_checkpoint(job["source"], {source_name(n): n for n in job["selected"]})
        init = tf.compat.v1.global_variables_initializer()
        saver = tf.compat.v1.train.Saver()
    phases["savers_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with tf.compat.v1.Session(graph=graph) as sess:
        phases["session_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sess.run(init)
        phases["init_restore_s"] = time.perf_counter() - t
        t = time.perf_counter()
        saver.save(sess, os.path.join(job["output"], "model.ckpt"), write_meta_graph=False)
        phases["save_s"] = time.perf_counter() - t
    phases["core_s"] = phases["session_s"] + phases["init_restore_s"] + phases["save_s"]
    return {"bytes_read": job["selected_bytes"], "bytes_written": _ckpt_data_size(job["output"]), "phases": phases}


def _ckpt_data_size(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory) if ".data-" in f)


# --------------------------------------------------------------------------- entry point


def run(job: dict) -> dict:
    m = job["method"]
    if m in ("floor", "floor-output"):
        return floor_ranges(job)
    if m == "floor-copyfile":
        return floor_copyfile(job)
    if m == "ws-stream":
        return ws_transfer(job, job["template"], "stream")
    if m == "ws-stream-sig":
        return ws_transfer(job, job["signature"], "stream")
    if m == "ws-restore":
        return ws_transfer(job, job["meta"], "restore")
    if m == "ws-assign":
        return ws_transfer(job, job["meta"], "assign")
    if m == "tf-restore-save":
        return tf_restore_save(job)
    if m == "tf-init-from-ckpt":
        return tf_init_from_ckpt(job)
    raise SystemExit(f"unknown method {m!r}")


def main() -> int:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    m = job["method"]
    if m in TF_METHODS:
        import tensorflow  # noqa: F401  (import cost is measured, then excluded from wall_s)
    if m in WS_METHODS:
        import_engine()
    for module in job.get("preimport", ()):  # e.g. s3fs for a source on S3: import cost is not transfer cost
        __import__(module)
    t1 = time.perf_counter()
    # Peak RSS is VmHWM of this process image. ru_maxrss is NOT used: Linux carries it across execve,
    # so a child inherits its parent's (the driver's) RSS as a floor.
    rss_import = _status_kib("VmHWM")
    result: dict = {"method": m, "import_s": round(t1 - T0, 4), "rss_after_import_kib": rss_import}
    io0 = proc_io()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    try:
        if profiler is not None:
            profiler.enable()
        out = run(job)
        if profiler is not None:
            profiler.disable()
        result.update(out)
        result["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - any failure is reported as "n/a" by the driver
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
        result["traceback"] = traceback.format_exc()[-4000:]
    t2 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    io1 = proc_io()
    # CPU time of the method (all threads) and page faults: user + sys far below wall means waiting.
    result["cpu"] = {"user_s": round(ru1.ru_utime - ru0.ru_utime, 4), "sys_s": round(ru1.ru_stime - ru0.ru_stime, 4),
                     "minflt": ru1.ru_minflt - ru0.ru_minflt, "majflt": ru1.ru_majflt - ru0.ru_majflt,
                     "vol_ctx": ru1.ru_nvcsw - ru0.ru_nvcsw, "invol_ctx": ru1.ru_nivcsw - ru0.ru_nivcsw}
    result["wall_s"] = round(t2 - t1, 4)
    result["peak_rss_kib"] = max(_status_kib("VmHWM"), rss_import)
    result["ru_maxrss_kib"] = _maxrss_kib()  # for reference only (see above)
    result["io"] = {k: io1.get(k, 0) - io0.get(k, 0) for k in ("rchar", "wchar", "syscr", "syscw",
                                                                 "read_bytes", "write_bytes")}
    result["tf_imported"] = "tensorflow" in sys.modules
    if "phases" in result:
        result["phases"] = {k: round(v, 4) for k, v in result["phases"].items()}
    if profiler is not None:
        result["profile"] = _profile_summary(profiler)
    result["child_s"] = round(time.perf_counter() - T0, 4)
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _profile_summary(profiler, top: int = 25) -> list[dict]:
    import pstats

    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{os.path.basename(filename)}:{line}({func})", "calls": nc,
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:top]


if __name__ == "__main__":
    sys.exit(main())
