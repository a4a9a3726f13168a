"""Sharded transfers on Dask against a capped object store: does throughput scale with workers?

A ≥ 2 GiB checkpoint (4 source data files) lies on a moto S3 server (its own process) behind
``throttle.py`` (its own process), which caps each connection at ``--rate`` bytes/s and delays
each response's first byte by ``--latency`` s. For each worker count, fresh ``dask worker``
processes (``--nthreads 1 --no-nanny``) join one ``dask scheduler``, and ``warmstart.transfer(...,
shards=S, dask=address)`` writes the output to local disk. Reported: throughput, the ratio to 1 worker
measured in the same run, each worker's peak RSS (VmHWM), whether every tensor is bit-identical to the
single-process stream output (made first, from the server without the proxy), and a run in which one
worker is killed with SIGKILL mid-way.

    nice -n 10 python benchmarks/dask_scaling.py            # about 10 minutes; writes DASK.md and DASK.json
    python benchmarks/dask_scaling.py --size-gib 0.25 --workers 1,2 --out /tmp/D.md   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1024 * 1024
CREDS = {"key": "testing", "secret": "testing"}


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def options(endpoint: str) -> dict:
    return {**CREDS, "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------- fixture

def write_source(root: Path, size_gib: float, tensor_mib: int, files: int) -> tuple[Path, Path]:
    """A checkpoint of float32 tensors of ``tensor_mib`` MiB over ``files`` data files, and its signature."""
    from warmstart.formats.bundle import BundleWriter, write_index
    from warmstart.storage import resolve
    from warmstart.tables import signature_of

    prefix, signature = root / "source" / "model.ckpt", root / "signature.json"
    count = max(files, round(size_gib * 1024 / tensor_mib))
    if signature.exists():
        return prefix, signature
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    entries: dict = {}
    rows = tensor_mib * MIB // 4 // 1024
    for shard in range(files):
        writer = BundleWriter(resolve(str(prefix)), shard, files)
        for i in range(shard, count, files):
            writer.add_array(f"layer_{i:04d}/kernel", rng.standard_normal((rows, 1024), dtype=np.float32), "float")
        entries.update(writer.close_data())
    write_index(resolve(str(prefix)).with_suffix(".index"), entries, files)
    signature.write_text(json.dumps(signature_of(str(prefix)).to_json()))
    return prefix, signature


# ----------------------------------------------------------------------------------------- processes

class Processes:
    """Child processes started by this run; all stopped at the end."""

    def __init__(self):
        self.children: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            self.stop(proc)


def start_store(procs: Processes, source: Path, rate: float, latency: float) -> tuple[str, str, str]:
    """moto (plain endpoint), the throttling proxy in front of it (capped endpoint), the source URL."""
    import s3fs

    port = free_port()
    procs.start(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    plain = f"http://127.0.0.1:{port}"
    _wait_port(port)
    proxy = procs.start([sys.executable, str(HERE / "throttle.py"), "--upstream", f"127.0.0.1:{port}",
                         "--rate", str(rate), "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    capped = f"http://127.0.0.1:{proxy.stdout.readline().split()[1]}"
    import boto3

    boto3.client("s3", endpoint_url=plain, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="bench")
    fs = s3fs.S3FileSystem(**options(plain))
    started = time.perf_counter()
    for path in sorted(source.parent.iterdir()):
        fs.put_file(str(path), f"bench/source/{path.name}")
    log(f"uploaded the source in {time.perf_counter() - started:.1f} s")
    return plain, capped, "s3://bench/source/model.ckpt"


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def start_scheduler(procs: Processes, work: Path) -> str:
    file = work / "scheduler.json"
    file.unlink(missing_ok=True)
    procs.start(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                 str(file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not file.exists():
        time.sleep(0.1)
    time.sleep(0.3)
    return json.loads(file.read_text())["address"]


def start_workers(procs: Processes, client, address: str, n: int) -> list[subprocess.Popen]:
    workers = [procs.start(["dask", "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny",
                            "--no-dashboard", "--memory-limit", "0", "--name", f"w{i}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    client.wait_for_workers(n, timeout=120)
    return workers


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------------------- checks

def tensors_equal(a: str, b: str) -> tuple[int, list[str]]:
    """(tensors compared, keys whose bytes differ) between two local checkpoints, tensor by tensor."""
    from warmstart.formats.bundle import BundleReader

    ra, rb = BundleReader(a), BundleReader(b)
    if set(ra.records) != set(rb.records):
        return 0, sorted(set(ra.records) ^ set(rb.records))
    differ = [k for k in ra.records
              if ra.read_entry_bytes(k, ra.records[k].entry) != rb.read_entry_bytes(k, rb.records[k].entry)]
    return len(ra.records), differ


def run_transfer(source: str, signature: Path, out: Path, storage: dict, shards: int | None, dask: str | None,
                 chunk_bytes: int | None = None) -> float:
    import warmstart

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    warmstart.transfer(source, str(signature), str(out), storage_options=storage, shards=shards, dask=dask,
                       chunk_bytes=chunk_bytes)
    return time.perf_counter() - started


def measure(args, procs, client, address, source, signature, capped, reference, n, kill_after=None) -> dict:
    workers = start_workers(procs, client, address, n)
    idle = [vm_kib(w.pid, "VmRSS") for w in workers]
    killed: list[int] = []
    if kill_after is not None:
        def kill() -> None:
            killed.append(workers[0].pid)
            os.kill(workers[0].pid, signal.SIGKILL)
            log(f"killed worker {workers[0].pid} after {kill_after:.1f} s")
        timer = threading.Timer(kill_after, kill)
        timer.start()
    out = Path(args.work_dir) / f"out-{n}{'-kill' if kill_after else ''}"
    seconds = run_transfer(source, signature, out, options(capped), args.shards, address, args.chunk_mib * MIB)
    peaks = [vm_kib(w.pid, "VmHWM") for w in workers if w.pid not in killed]
    compared, differ = tensors_equal(str(reference), str(out / "model.ckpt"))
    for w in workers:
        procs.stop(w)
    shutil.rmtree(out, ignore_errors=True)
    row = {"workers": n, "seconds": round(seconds, 2), "mb_per_s": round(args.total_bytes / seconds / 1e6, 1),
           "peak_rss_mib": [round(p / 1024, 1) for p in peaks], "idle_rss_mib": [round(p / 1024, 1) for p in idle],
           "tensors_compared": compared, "tensors_differing": differ, "killed_worker": bool(killed)}
    log(json.dumps({k: v for k, v in row.items() if k != "tensors_differing"}), "differ:", len(differ))
    return row


# ----------------------------------------------------------------------------------------- report

def render(doc: dict) -> str:
    a = doc["args"]
    lines = ["# Sharded transfers on Dask against a capped object store", "",
             f"Command: `{doc['command']}` ({doc['date']}, {doc['wall_minutes']} min).", "",
             f"Machine: {doc['machine']}.", "",
             (f"Checkpoint: {doc['total_bytes'] / 2**30:.2f} GiB, {doc['tensors']} float32 tensors of "
              f"{a['tensor_mib']} MiB in {a['source_files']} data files, on moto S3 (own process) behind "
              f"`throttle.py` (own process): {a['rate'] / 1e6:g} MB/s per connection, {a['latency'] * 1000:g} ms "
              f"to first byte. Chunks of {a['chunk_mib']} MiB. Output: {a['shards']} data files on local disk, "
              "target a signature. Each run starts fresh `dask worker --nthreads 1 --no-nanny` processes on one "
              "`dask scheduler`."), "",
             f"Reference (single-process stream, no shards, from moto without the proxy): {doc['reference_s']} s.", "",
             ("| workers | seconds | MB/s | vs 1 worker | efficiency (ratio / workers) | peak RSS per worker, MiB "
              "(idle) | tensors bit-identical |"), "|---|---|---|---|---|---|---|"]
    base = doc["runs"][0]["mb_per_s"]
    for r in doc["runs"]:
        ratio = r["mb_per_s"] / base
        same = f"{r['tensors_compared'] - len(r['tensors_differing'])}/{r['tensors_compared']}"
        lines.append(f"| {r['workers']}{' (one killed)' if r['killed_worker'] else ''} | {r['seconds']} | "
                     f"{r['mb_per_s']} | {ratio:.2f}x | {ratio / r['workers']:.2f} | "
                     f"{', '.join(map(str, r['peak_rss_mib']))} ({min(r['idle_rss_mib'])}-{max(r['idle_rss_mib'])}) "
                     f"| {same} |")
    return "\n".join(lines + [""] + targets(doc) + [""] + limits(doc)) + "\n"


def targets(doc: dict) -> list[str]:
    """The issue's targets, each with its verdict from this run's numbers."""
    plain = [r for r in doc["runs"] if not r["killed_worker"]]
    base = plain[0]["mb_per_s"]
    lines = ["## Targets (issue 13)", ""]
    for r in plain[1:]:
        eff = r["mb_per_s"] / base / r["workers"]
        goal = "target >= 0.8 up to 4 workers" if r["workers"] <= 4 else "beyond the target's range"
        verdict = ("PASS" if eff >= 0.8 else "FAIL") if r["workers"] <= 4 else ("-")
        lines.append(f"- {r['workers']} workers: {eff:.2f} x linear ({goal}): {verdict}")
    peak = max(p for r in doc["runs"] for p in r["peak_rss_mib"])
    lines.append(f"- peak RSS per worker <= 150 MiB: highest {peak} MiB: {'PASS' if peak <= 150 else 'FAIL'}")
    same = all(not r["tensors_differing"] and r["tensors_compared"] == doc["tensors"] for r in doc["runs"])
    lines.append(f"- every run's output bit-identical per tensor to the single-process output: {'PASS' if same else 'FAIL'}")
    killed = [r for r in doc["runs"] if r["killed_worker"]]
    if killed:
        k = killed[0]
        lines.append(f"- a worker killed with SIGKILL mid-way ({k['workers']} workers): completed in {k['seconds']} s "
                     f"instead of {next((r['seconds'] for r in plain if r['workers'] == k['workers']), '?')} s, "
                     f"output identical: {'PASS' if not k['tensors_differing'] else 'FAIL'}")
    return lines


def limits(doc: dict) -> list[str]:
    """What the machine, not the store, bounds in this run."""
    unthrottled = doc["total_bytes"] / doc["reference_s"] / 1e6
    plain = {r["workers"]: r["mb_per_s"] for r in doc["runs"] if not r["killed_worker"]}
    most = max(plain)
    below = max((n for n in plain if n < most), default=most)
    return ["## What this machine limits", "",
            ("Everything runs on one 2-core VM: moto (one Python process serving every ranged GET), the throttling "
             "proxy, the scheduler, the workers (CRC32C of every byte, writes) and the driver. The cap per "
             "connection is what makes the store, not the machine, the bottleneck for a few workers: one worker "
             "keeps about three 4 MiB reads in flight (the stream strategy's byte budget), so it is held near "
             f"3 x {doc['args']['rate'] / 1e6:g} MB/s. Past that the cores are: unthrottled, one process streamed "
             f"this checkpoint out of moto at {unthrottled:.0f} MB/s in this run (moto alone takes most of a core "
             f"while it serves), and {most} workers, sharing 2 cores with moto and the proxy, moved "
             f"{plain[most]} MB/s against {plain[below]} MB/s with {below}. On a real cluster each worker has its "
             "own cores and network and the store scales with connections; this run cannot show that part. The "
             "kill run loses one worker's unit in progress (another worker runs it again, under its own staging "
             "name) and continues with one worker fewer: it costs about a unit's time more, not a restart."),
            "",
            ("The table's RSS is each worker process's VmHWM (peak resident set) read from /proc after the run; "
             "'idle' is its VmRSS before the run (a bare `dask worker`: warmstart, s3fs and numpy are imported by "
             "the first unit). The machine is shared: other processes' load changes the unthrottled reference and "
             "the runs with more workers than cores from one run to the next. Re-render this file from DASK.json "
             "with `--render-only`.")]


def machine() -> str:
    cpus = os.cpu_count()
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0) / 2**20
    import dask
    import distributed

    return (f"{cpus} cores, {mem:.0f} GiB RAM, {platform.platform()}, Python {platform.python_version()}, "
            f"dask/distributed {dask.__version__}/{distributed.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--tensor-mib", type=int, default=32)
    parser.add_argument("--source-files", type=int, default=4)
    parser.add_argument("--rate", type=float, default=5e6, help="bytes/s per connection")
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--chunk-mib", type=int, default=8, help="the stream's chunk_bytes, in MiB")
    parser.add_argument("--kill-workers", type=int, default=4, help="workers of the run that loses one (0: none)")
    parser.add_argument("--work-dir", default="/tmp/warmstart-dask-bench")
    parser.add_argument("--out", default=str(HERE / "DASK.md"))
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--render-only", action="store_true", help="rewrite --out from its JSON, measuring nothing")
    args = parser.parse_args(argv)
    json_out = Path(args.json_out or Path(args.out).with_suffix(".json"))
    if args.render_only:
        Path(args.out).write_text(render(json.loads(json_out.read_text())))
        return 0
    began = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    prefix, signature = write_source(work / "fixture", args.size_gib, args.tensor_mib, args.source_files)
    from warmstart.formats.bundle import BundleReader

    src = BundleReader(str(prefix))
    args.total_bytes = sum(r.stored_bytes for r in src.records.values())
    procs = Processes()
    try:
        from distributed import Client

        plain, capped, source = start_store(procs, prefix, args.rate, args.latency)
        reference = work / "reference"
        reference_s = run_transfer(source, signature, reference, options(plain), None, None)
        log(f"reference (single process, unthrottled): {reference_s:.1f} s")
        address = start_scheduler(procs, work)
        runs = []
        with Client(address, set_as_default=False) as client:
            for n in [int(x) for x in args.workers.split(",")]:
                runs.append(measure(args, procs, client, address, source, signature, capped,
                                    reference / "model.ckpt", n))
            if args.kill_workers:
                expected = next((r["seconds"] for r in runs if r["workers"] == args.kill_workers), runs[-1]["seconds"])
                runs.append(measure(args, procs, client, address, source, signature, capped,
                                    reference / "model.ckpt", args.kill_workers, kill_after=0.4 * expected))
    finally:
        procs.stop_all()
    doc = {"command": "python benchmarks/dask_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           "wall_minutes": round((time.perf_counter() - began) / 60, 1),
           "args": {k: v for k, v in vars(args).items() if k not in ("total_bytes", "render_only")},
           "total_bytes": args.total_bytes,
           "tensors": len(src.records), "reference_s": round(reference_s, 2), "runs": runs}
    json_out.write_text(json.dumps(doc, indent=1) + "\n")
    text = render(doc)
    Path(args.out).write_text(text)
    print(text)
    return 0 if all(not r["tensors_differing"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
