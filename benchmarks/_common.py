"""Shared definitions for the benchmark driver, the fixture writer and the per-method child processes.

Standard library only: every child process imports this module, and its import cost must stay
negligible next to the work being measured.
"""

from __future__ import annotations

import os
import re

MIB = 1024 * 1024

# Source names are ``old/block<b>/t<i>``; the target (template, .meta, signature) uses ``new/...``.
# Include patterns are full-match regexes, as in warmstart's rules.
# ``b = i * 10 // count`` puts the tensors in 10 contiguous blocks, so "10%" is one block (a
# contiguous run of tensors, as when taking one encoder out of a model) and "50%" five blocks.
SRC_PREFIX = "old"
DST_PREFIX = "new"
RENAME = [[r"^new/(.*)$", r"old/\1"]]

SELECTIONS = {
    10: [r"new/block0/.*"],
    50: [r"new/block[0-4]/.*"],
    100: None,  # no include: every target variable
}


def tensor_name(prefix: str, i: int, count: int) -> str:
    return f"{prefix}/block{i * 10 // count}/t{i:05d}"


def set_tensors(spec: dict) -> list[tuple[str, list[int]]]:
    """``[(target_name, shape), ...]`` of a fixture set (float32 throughout)."""
    return [(tensor_name(DST_PREFIX, i, spec["count"]), list(spec["shape"])) for i in range(spec["count"])]


def source_name(target_name: str) -> str:
    return re.sub(RENAME[0][0], RENAME[0][1], target_name)


def rules_for(selection: int) -> dict:
    rules: dict = {"rename": RENAME, "on_missing": "init"}
    if SELECTIONS[selection] is not None:
        rules["include"] = SELECTIONS[selection]
    return rules


def selected(target_names: list[str], selection: int) -> list[str]:
    patterns = SELECTIONS[selection]
    if patterns is None:
        return list(target_names)
    rx = [re.compile(p) for p in patterns]
    return [n for n in target_names if any(r.fullmatch(n) for r in rx)]  # as warmstart's rules match


def build_tf1_graph(tf, tensors: list[tuple[str, list[int]]]):
    """A fresh ``tf.Graph`` holding one TF1 variable per ``(name, shape)`` (float32, TF1's default
    ``glorot_uniform`` initializer, as ``get_variable`` gives). Nothing is allocated until a session
    runs an initializer or a restore. Returns ``(graph, {name: variable})``."""
    graph = tf.Graph()
    variables = {}
    with graph.as_default():
        for name, shape in tensors:
            variables[name] = tf.compat.v1.get_variable(name, shape=shape, dtype=tf.float32)
    return graph, variables


def proc_io() -> dict[str, int]:
    """``/proc/self/io`` counters: rchar/wchar count every byte through read()/write() syscalls
    (page-cache hits included), read_bytes/write_bytes what reached the block layer."""
    out = {}
    try:
        with open("/proc/self/io") as f:
            for line in f:
                k, v = line.split(":")
                out[k.strip()] = int(v)
    except OSError:
        pass
    return out


def tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def import_engine() -> None:
    """warmstart imports its modules when first used: import here every module of the wings a transfer runs in
    (and build the rules' validator, built on first use), so that ``import_s`` holds the imports and ``wall_s``
    the method alone, as for the other methods. Whole processes, imports included: benchmarks/startup.py."""
    import pkgutil

    import warmstart

    for wing in ("storage", "formats", "planning", "strategies", "pipeline"):
        package = __import__(f"warmstart.{wing}", fromlist=["_"])
        for info in pkgutil.walk_packages(package.__path__, f"warmstart.{wing}."):
            __import__(info.name)
    warmstart.load_rules({})
