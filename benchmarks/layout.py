"""Where everything is, for the benchmark driver: this folder and the repository, the fixture sets in
the work dir (their specs from the command line, and ``ensure_fixtures``, which reuses a set whose
parameters are unchanged or has ``fixtures.py`` write it in a child process) and, per set, ``Layout``:
its files and where each tensor's bytes lie in the source and the template. Also the driver's ``log``
and ``child_env``, the environment of every child process it starts (fixture writer and measurements).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import MIB, set_tensors, source_name

import warmstart.strategies.stream as _stream  # (no TensorFlow import)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIB = 1024 * MIB
CHUNK_MIB = _stream.DEFAULT_CHUNK_BYTES // MIB  # the 'large' tensor must be larger than this


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# --------------------------------------------------------------------------- fixture sets


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
        _write_fixtures(root, missing, infos, timeout)
    return {name: infos[name] for name in specs}


def _write_fixtures(root: Path, missing: dict[str, dict], infos: dict, timeout: float) -> None:
    log("[fixtures] writing " + "; ".join(describe(n, s) for n, s in missing.items()) + f" into {root} ...")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / "fixtures.py"), str(root), json.dumps(missing)],
                          capture_output=True, text=True, timeout=timeout, env=child_env())
    if proc.returncode != 0:
        for name in missing:
            shutil.rmtree(root / name, ignore_errors=True)
        raise SystemExit(f"writing fixtures failed:\n{proc.stderr[-4000:]}")
    for name in missing:
        infos[name] = {**json.loads((root / name / "fixture.json").read_text()), "reused": False}
    log(f"[fixtures] done in {time.perf_counter() - t:.1f} s: " + "; ".join(
        f"{n}: {infos[n]['times']}" for n in missing))


# --------------------------------------------------------------------------- one set's files


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
