"""warmstart's range reads (warmstart/storage/ranges.py) against fsspec's own, on a real S3 server.

    python benchmarks/ranges_vs_fsspec.py [--repeat 3] [--out benchmarks/RANGES.md]

The question (issue 9): should ``plan_blocks`` / ``fetch_blocks`` give way to
``fsspec.utils.merge_offset_ranges`` and ``fs.cat_ranges``? Both sides read the same tensor byte
ranges of one object on a moto S3 server, through a counting proxy (requests and bytes served), each
run in a fresh process (wall time and peak RSS of that process):

- ``warmstart``: ``plan_blocks(max_block=8 MiB, max_gap=4 KiB)`` then ``fetch_blocks`` with up to 32 reads
  and 24 MiB in flight (the stream strategy's defaults for object stores);
- ``fsspec-windowed``: ``merge_offset_ranges(max_gap=4 KiB, max_block=8 MiB)`` then ``fs.cat_ranges``
  over windows of 3 merged ranges (a bound on what is in flight, as far as fsspec allows);
- ``fsspec-all``: the same merged ranges in one ``fs.cat_ranges`` call (fsspec's intended use; its async
  filesystems refuse ``cat_ranges(max_gap=...)``, so the merging is ``merge_offset_ranges`` either way).

Layouts (random bytes laid out like a checkpoint's data file): ``small`` 20,000 x 1 KiB tensors with a
10% random selection; ``medium`` 32 x 8 MiB tensors, every other one; ``large`` one 96 MiB tensor.
Planning alone (CPU) is timed for 200,000 requests. Results: ``--out`` (markdown) and a JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1024 * 1024
MAX_BLOCK = 8 * MIB
MAX_GAP = 4096
IN_FLIGHT = 3
LAYOUTS = {"small": (20_000, 1024, 0.10), "medium": (32, 8 * MIB, 0.5), "large": (1, 96 * MIB, 1.0)}
METHODS = ("warmstart", "fsspec-windowed", "fsspec-all")


def requests_for(layout: str) -> list[tuple[int, int, int, int]]:
    """(tag, shard, offset, size) of the selected tensors: deterministic for a layout."""
    count, size, fraction = LAYOUTS[layout]
    if fraction == 0.5:
        chosen = range(0, count, 2)
    else:
        chosen = sorted(random.Random(9).sample(range(count), max(1, round(count * fraction))))
    return [(i, 0, i * size, size) for i in chosen]


# --------------------------------------------------------------------------- child: one measured read


# Each reader returns the bytes it received (gaps read to save a request included).


def read_warmstart(fs, path: str, requests) -> int:
    from warmstart.storage import fetch_blocks, plan_blocks

    blocks = plan_blocks(requests, max_block=MAX_BLOCK, max_gap=MAX_GAP)
    total = 0
    from warmstart.strategies.stream import MAX_REMOTE_REQUESTS

    read = lambda b: fs.cat_file(path, start=b.start, end=b.end)  # noqa: E731
    for _, data in fetch_blocks(blocks, read, MAX_REMOTE_REQUESTS, IN_FLIGHT * MAX_BLOCK):
        total += len(data)
    return total


def _merged(path: str, requests) -> tuple[list[str], list[int], list[int]]:
    from fsspec.utils import merge_offset_ranges

    starts = [offset for _, _, offset, _ in requests]
    ends = [offset + size for _, _, offset, size in requests]
    return merge_offset_ranges([path] * len(starts), starts, ends, max_gap=MAX_GAP, max_block=MAX_BLOCK, sort=True)


def read_fsspec_windowed(fs, path: str, requests) -> int:
    paths, starts, ends = _merged(path, requests)
    total = 0
    for i in range(0, len(starts), IN_FLIGHT):
        window = slice(i, i + IN_FLIGHT)
        total += sum(len(d) for d in fs.cat_ranges(paths[window], starts[window], ends[window], on_error="raise"))
    return total


def read_fsspec_all(fs, path: str, requests) -> int:
    # s3fs/gcsfs (async filesystems) refuse cat_ranges(max_gap=...) with NotImplementedError (fsspec
    # 2025.x asyn.py): merging is the caller's job, so merge first, then one call for everything.
    paths, starts, ends = _merged(path, requests)
    return sum(len(d) for d in fs.cat_ranges(paths, starts, ends, on_error="raise"))


READERS = {"warmstart": read_warmstart, "fsspec-windowed": read_fsspec_windowed, "fsspec-all": read_fsspec_all}


def child(method: str, layout: str, path: str, options: dict) -> dict:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    requests = requests_for(layout)
    base_rss = _vm_kib("VmRSS")
    started = time.perf_counter()
    got = READERS[method](fs, path, requests)
    wall = time.perf_counter() - started
    expected = sum(size for *_, size in requests)
    return {"wall_s": wall, "bytes": got, "expected": expected, "peak_rss_mib": _vm_kib("VmHWM") / 1024,
            "rss_before_mib": base_rss / 1024}


def _vm_kib(field: str) -> int:
    """A /proc/self/status figure in KiB. (``ru_maxrss`` will not do: Linux carries it over fork and
    exec, so a child would report its parent's peak: here the in-process moto server's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# --------------------------------------------------------------------------- driver


def planning_times(n: int = 200_000) -> dict:
    from fsspec.utils import merge_offset_ranges

    from warmstart.storage import plan_blocks

    rng = random.Random(3)
    requests = [(i, 0, i * 1024, 1024) for i in sorted(rng.sample(range(2 * n), n))]
    t = time.perf_counter()
    blocks = plan_blocks(requests, max_block=MAX_BLOCK, max_gap=MAX_GAP)
    ours = time.perf_counter() - t
    starts = [r[2] for r in requests]
    ends = [r[2] + r[3] for r in requests]
    t = time.perf_counter()
    _, merged, _ = merge_offset_ranges(["p"] * n, starts, ends, max_gap=MAX_GAP, max_block=MAX_BLOCK, sort=True)
    theirs = time.perf_counter() - t
    return {"requests": n, "warmstart_s": ours, "warmstart_blocks": len(blocks), "fsspec_s": theirs,
            "fsspec_ranges": len(merged)}


def measure(args) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(HERE))
    from s3proxy import CountingProxy
    from servers import S3Server

    server = S3Server().start()
    proxy = CountingProxy(server.host, server.port).start()
    runs = []
    try:
        server.make_bucket("ranges")
        fs = server.filesystem()
        options = server.storage_options()
        options = {**options, "client_kwargs": {**options["client_kwargs"], "endpoint_url": proxy.endpoint_url}}
        for layout, (count, size, _) in LAYOUTS.items():
            path = f"ranges/{layout}.data"
            fs.pipe_file(path, os.urandom(count * size))
            for _ in range(args.repeat):
                for method in METHODS:
                    proxy.reset()
                    res = run_child(method, layout, path, options)
                    counts = proxy.snapshot()
                    runs.append({"layout": layout, "method": method, **res, "requests": counts["requests"],
                                 "served_bytes": counts["body_bytes"]})
                    print(f"{layout:7s} {method:16s} {res['wall_s']:.3f} s  {counts['requests']:5d} requests  "
                          f"peak {res['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        proxy.stop()
        server.stop()
    return {"runs": runs, "planning": planning_times(), "repeat": args.repeat}


def run_child(method: str, layout: str, path: str, options: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([method, layout, path, options])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"{method} {layout} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res["bytes"] < res["expected"]:  # merged reads may include gap bytes; none may come short
        raise RuntimeError(f"{method} {layout} read {res['bytes']} bytes, fewer than the {res['expected']} selected")
    return res


def render(doc: dict) -> str:
    lines = ["# Range reads: warmstart vs fsspec (moto S3 through a counting proxy)", "",
             f"command: `python benchmarks/ranges_vs_fsspec.py --repeat {doc['repeat']}`; medians of "
             f"{doc['repeat']} runs, each in a fresh process; 8 MiB blocks, 4 KiB gap; peak RSS is the reading process's "
             f"(VmHWM), {doc['runs'][0]['rss_before_mib']:.0f} MiB of it before the read (Python, s3fs).", "",
             "| layout | method | wall s | vs warmstart | requests | served MiB | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for layout in LAYOUTS:
        med = {m: _median(doc["runs"], layout, m) for m in METHODS}
        for m in METHODS:
            r = med[m]
            lines.append(f"| {layout} | {m} | {r['wall_s']:.3f} | {r['wall_s'] / med['warmstart']['wall_s']:.2f}x | "
                         f"{r['requests']} | {r['served_bytes'] / MIB:.1f} | {r['peak_rss_mib']:.0f} |")
    p = doc["planning"]
    lines += ["", f"Planning {p['requests']:,} requests (CPU only): plan_blocks {p['warmstart_s'] * 1000:.0f} ms "
              f"({p['warmstart_blocks']} blocks), merge_offset_ranges {p['fsspec_s'] * 1000:.0f} ms "
              f"({p['fsspec_ranges']} ranges)."]
    return "\n".join(lines) + "\n"


def _median(runs: list[dict], layout: str, method: str) -> dict:
    mine = [r for r in runs if r["layout"] == layout and r["method"] == method]
    return {k: statistics.median(r[k] for r in mine) for k in ("wall_s", "requests", "served_bytes", "peak_rss_mib")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "RANGES.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return 0
    doc = measure(args)
    text = render(doc)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
