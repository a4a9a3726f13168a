"""Allocation bounds and parser robustness: a few hundred hostile bytes never crash warmstart, never
make it allocate or read more than the input holds; every malformed input is a typed error.
Includes a bounded fuzz test over real TF-written index files, run under a memory cap."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import builders
import hostile
import numpy as np
import pytest

import warmstart
from warmstart import CorruptCheckpointError, UsageError
from warmstart.formats.bundle._protos import write_varint
from warmstart.formats.bundle._strings import frame_strings, string_entry_crc
from warmstart.formats.bundle.object_graph import OBJECT_GRAPH_KEY
from warmstart.planning import load_rules

TESTS = Path(__file__).parent
MEMORY_CAP = 1 << 30  # address space for the child processes below; the parser needs ~200 MiB


def peak_mib() -> int:
    """This process's peak memory since it started its program, resident (VmHWM; ru_maxrss would count
    the forking parent's pages too) or reserved (VmPeak: a huge buffer allocated but not yet touched)."""
    status = Path("/proc/self/status").read_text()
    return max(int(status.split(f"{field}:")[1].split()[0]) // 1024 for field in ("VmHWM", "VmPeak"))


def run_capped(code: str, *args: str, cap: int = MEMORY_CAP) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a child whose address space is capped (a huge allocation is a MemoryError)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          preexec_fn=limit, env=env, timeout=300)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Real TF-written checkpoints of each kind the parser meets."""
    root = tmp_path_factory.mktemp("bounds")
    tf1 = builders.tf1_checkpoint(root / "tf1", {
        "w": np.arange(40, dtype=np.float32), "b": np.ones(3, np.float64), "s": np.array([b"ab", b"cde"]),
        "scope/k": np.zeros((3, 4), np.int8), "step": np.int64(7)})
    part = builders.partitioned_checkpoint(root / "part")
    tf2 = builders.tf2_checkpoint(root / "tf2", with_optimizer=True)
    return {"tf1": tf1["dir"], "part": part["dir"], "tf2": str(Path(tf2["prefix"]).parent)}


@pytest.mark.slow
def test_fuzzed_indexes_give_a_table_or_a_typed_error_within_a_memory_cap(checkpoints, tmp_path):
    """Seeded mutations of TF-written index files (entries, header, raw bytes): 3 x 1,200 cases, each
    read fully (table, every tensor); any other exception, or a MemoryError under the cap, fails."""
    code = """
        import json, sys
        import hostile
        dirs, work = json.loads(sys.argv[1]), sys.argv[2]
        totals = {}
        for name, d in dirs.items():
            for seed in range(3):
                for k, v in hostile.fuzz_directory(d, work, 400, seed).items():
                    totals[k] = totals.get(k, 0) + v
        print(json.dumps(totals))
    """
    out = run_capped(code, json.dumps(checkpoints), str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    totals = json.loads(out.stdout.strip().splitlines()[-1])
    assert totals["table"] + totals["refused"] == 3600
    assert totals["table"] > 0 and totals["refused"] > 0  # both kinds of outcome are exercised


def _with_object_graph(tf2_dir, tmp_path, payload: bytes, size: int | None = None) -> Path:
    """A copy of a TF2 checkpoint whose object-graph tensor holds ``payload`` (framed and CRC'd as TF
    does, appended to the data file), or whose entry claims ``size`` bytes."""
    d = hostile.copy_checkpoint(tf2_dir, tmp_path / "tf2")
    data = next(d.glob("*.data-*"))
    framed = frame_strings([payload])
    offset = data.stat().st_size
    with open(data, "ab") as f:
        f.write(framed)

    def edit(found):
        key = OBJECT_GRAPH_KEY.encode()
        found[key] = hostile.replace(found[key], offset=offset, size=size if size is not None else len(framed),
                                     crc32c=string_entry_crc(framed, 1))
    hostile.edit_entries(d, edit)
    return d


@pytest.mark.parametrize("length", [1 << 29, 1 << 62])
def test_a_huge_length_inside_the_object_graph_is_refused_in_bounded_memory(checkpoints, tmp_path, length):
    # nodes { children { local_name: <length bytes> } }, with only a few bytes behind the length
    child = b"\x12" + write_varint(length) + b"abc"
    node = b"\x0a" + write_varint(len(child)) + child
    payload = b"\x0a" + write_varint(len(node)) + node
    d = _with_object_graph(checkpoints["tf2"], tmp_path, payload)
    out = run_capped("""
        import sys, warmstart
        from test_bounds import peak_mib
        try:
            warmstart.read_table(sys.argv[1])
        except warmstart.CorruptCheckpointError as exc:
            print("refused:", exc)
        print("maxrss_mib", peak_mib())
    """, str(d))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "refused:" in out.stdout and "object graph" in out.stdout
    assert int(out.stdout.split("maxrss_mib")[1]) < 400


@pytest.mark.parametrize("size", [1 << 29, 1 << 62])
def test_an_entry_claiming_more_bytes_than_its_file_holds_is_refused_before_reading(checkpoints, tmp_path, size):
    """``inspect`` of a small TF2 checkpoint whose object-graph entry claims 512 MiB or 2**62 bytes."""
    d = _with_object_graph(checkpoints["tf2"], tmp_path, b"", size=size)
    out = run_capped("""
        import sys
        from test_bounds import peak_mib
        from warmstart.cli import main
        code = main(["inspect", sys.argv[1]])
        print("exit", code, "maxrss_mib", peak_mib())
    """, str(d))
    assert "exit 3" in out.stdout, out.stdout + out.stderr[-3000:]
    assert "needs bytes" in out.stderr and "Traceback" not in out.stderr
    assert int(out.stdout.split("maxrss_mib")[1]) < 400


@pytest.mark.parametrize("field", [
    b"\x12\x02\x12\x05",              # a dim whose length runs past the shape
    b"\x3a" + write_varint(1 << 40),  # a slice whose length runs past the entry
    b"\x12" + write_varint(1 << 62),  # a shape of 2**62 bytes
    b"\x0b",                          # a group start (wire type 3) that never ends
])
def test_lengths_past_the_entry_are_corrupt_input_not_crashes(checkpoints, tmp_path, field):
    d = hostile.copy_checkpoint(checkpoints["tf1"], tmp_path / "ckpt")
    hostile.write_raw_index(d, [(k, v + field if k == b"w" else v) for k, v in hostile.raw_index(d)])
    with pytest.raises(CorruptCheckpointError, match="malformed index entry"):
        warmstart.read_table(d)


@pytest.mark.parametrize("field", [
    b"\x10\x05",     # shape (a message) sent as a varint
    b"\x22\x03abc",  # offset (an int64) sent as bytes
])
def test_a_field_of_the_wrong_wire_type_is_an_unknown_field_as_protobuf_says(checkpoints, tmp_path, field):
    """Protobuf parsers skip a field whose wire type does not match its number: the entry keeps its
    real shape and offset (and would be refused by the size checks if it did not)."""
    d = hostile.copy_checkpoint(checkpoints["tf1"], tmp_path / "ckpt")
    hostile.write_raw_index(d, [(k, v + field if k == b"w" else v) for k, v in hostile.raw_index(d)])
    np.testing.assert_array_equal(warmstart.formats.bundle.BundleReader(str(d)).read("w"), np.arange(40, dtype=np.float32))


def test_a_rename_template_with_a_bad_escape_is_a_usage_error_when_rules_load(checkpoints, tmp_path):
    with pytest.raises(UsageError, match=r"bad escape \\q"):
        load_rules({"rename": [["x/(.*)", r"x/\q\1"]]})
    rules = tmp_path / "rules.yaml"
    rules.write_text('rename:\n  - ["x/(.*)", "x/\\\\q\\\\1"]\n')
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", checkpoints["tf1"], checkpoints["tf1"],
                          "--rules", str(rules)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "bad escape" in out.stderr, out.stderr


def test_invalid_yaml_rules_are_one_line(checkpoints, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rename: [[a, b]\n  x: : y\n")
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", checkpoints["tf1"], checkpoints["tf1"],
                          "--rules", str(rules)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid YAML/JSON" in lines[0] and "line 2" in lines[0], out.stderr


def test_a_json_rules_file_is_read_as_yaml_reads_it_and_what_is_not_json_by_yaml_as_before(tmp_path):
    import yaml

    from warmstart.planning.rules import Rules

    rules = tmp_path / "rules.json"
    doc = {"rename": [["model/(.*)", "bert/\\1"], ["head/.*", None]], "on_missing": "init", "min_coverage": 1e-1,
           "include": ["caf\u00e9/.*"], "exclude": [], "allow_shared_source": True}
    rules.write_text(json.dumps(doc))
    assert load_rules(rules) == Rules.model_validate(yaml.safe_load(rules.read_text())) == Rules.model_validate(doc)
    rules.write_text('{"on_missing": "init",}')  # a trailing comma: YAML's flow mapping, not JSON
    assert load_rules(rules).on_missing == "init"
    rules.write_text('{"min_coverage": NaN}')
    with pytest.raises(UsageError, match="min_coverage: Input should be less than or equal to 1"):
        load_rules(rules)
    rules.write_text('{"include": ["a"]} trailing')
    with pytest.raises(UsageError, match=r"not valid YAML/JSON: .* \(line 1, column 20\)"):
        load_rules(rules)


def test_index_keys_out_of_order_are_corrupt(checkpoints, tmp_path):
    """TF writes keys sorted; a table whose keys are not (a hand-made or damaged index) is refused."""
    from warmstart.formats.bundle._sstable import TableWriter

    d = hostile.copy_checkpoint(checkpoints["tf1"], tmp_path / "ckpt")
    items = hostile.raw_index(d)
    writer = TableWriter()
    for key, value in [*items[:2], items[3], items[2], *items[4:]]:
        writer._last_key = None  # let the swapped pair through: the reader is what is tested
        writer.add(key, value)
    next(d.glob("*.index")).write_bytes(writer.finish())
    with pytest.raises(CorruptCheckpointError, match="index keys out of order"):
        warmstart.read_table(d)


def test_a_huge_state_file_is_refused_unread(checkpoints, tmp_path):
    d = hostile.copy_checkpoint(checkpoints["tf1"], tmp_path / "ckpt")
    with open(d / "checkpoint", "r+b") as f:
        f.truncate(2 << 20)  # sparse: 2 MiB of zeros after TF's lines
    with pytest.raises(CorruptCheckpointError, match="bytes: not a checkpoint state file"):
        warmstart.read_table(d)


def test_rules_that_are_not_text_are_a_usage_error(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(b"include: ['\xff\xfe']\n")
    with pytest.raises(UsageError, match="not a text file"):
        load_rules(rules)
