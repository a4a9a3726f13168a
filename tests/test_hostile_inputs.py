"""Untrusted rules, vocabularies, Keras archives and special files, tried as an attacker or an unlucky
user would, through the CLI in a child process under a memory cap: each is a one-line typed error with
its exit code (2 rules, 3 inputs, 4 outputs), fast, nothing published, nothing run that the user did not
type. Each test names the defect of the issue it pins down (1: code from rules, 4: unbounded reads,
5: nested config.json, 6: declared HDF5 sizes, 7: zip bombs, 8: regex and rules cost, 9: the rest)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import builders
import numpy as np
import pytest

TESTS = Path(__file__).parent
CAP = 1 << 30  # address space of a CLI child that does not import TensorFlow
TF_CAP = 4 << 30  # ... and of one that does (TF reserves ~1.4 GiB of address space at import)


def cli(*args: str, cap: int = CAP, env: dict[str, str] | None = None, cwd=None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """``warmstart ARGS`` in a child whose address space is capped (an unbounded read is a MemoryError)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    path = os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "warmstart.cli", *args], capture_output=True, text=True,
                          preexec_fn=limit, env={**os.environ, "PYTHONPATH": path, **(env or {})}, cwd=cwd,
                          timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and len(lines) == 1 and "Traceback" not in out.stderr, \
        (out.returncode, out.stderr[-3000:])
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tf1(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    builders.tf1_checkpoint(root / "src", {"w": np.arange(6, dtype=np.float32), "emb": np.ones((4, 2), np.float32)})
    builders.tf1_checkpoint(root / "tpl", {"w": np.zeros(6, np.float32), "emb": np.zeros((4, 2), np.float32)})
    return root


# --------------------------------------------------------------------------- 1. code from rules


@pytest.mark.parametrize("builder", ["py:sideeffect:build", "py:os:abort", "py:sys:exit"])
def test_1_a_builder_named_in_the_rules_does_not_run_unless_code_is_allowed(tf1, tmp_path, builder):
    (tmp_path / "sideeffect.py").write_text("import pathlib\npathlib.Path('RAN').write_text('ran')\n"
                                            "def build():\n    raise SystemExit(0)\n")
    (tmp_path / "rules.yaml").write_text(f"source_structure: {builder}\n")
    for cmd in ("plan", "transfer"):
        extra = [str(tmp_path / "out")] if cmd == "transfer" else []
        out = cli(cmd, str(tf1 / "src"), str(tf1 / "tpl"), *extra, "--rules", "rules.yaml", "--json",
                  *(["--no-prefect"] if cmd == "transfer" else []), cwd=tmp_path)
        one_line_error(out, 2, "names Python code", "--allow-code")
        assert json.loads(out.stdout)["status"] == "failed"
    assert not (tmp_path / "RAN").exists() and not (tmp_path / "out").exists()


def test_1_an_allowed_builder_that_exits_is_a_typed_error_never_a_success(tf1, tmp_path):
    (tmp_path / "leave.py").write_text("import sys\ndef build():\n    sys.exit(0)\n")
    (tmp_path / "rules.yaml").write_text("source_structure: py:leave:build\n")
    tf2 = builders.tf2_checkpoint(tmp_path / "tf2")
    out = cli("plan", str(Path(tf2["prefix"])), str(Path(tf2["prefix"])), "--rules", "rules.yaml", "--allow-code",
              cwd=tmp_path, cap=TF_CAP)
    one_line_error(out, 3, "builder py:leave:build raised SystemExit", "sys.exit(0)")
    # typed as TARGET, the builder runs (the user typed it): its exit is a typed error too
    out = cli("transfer", str(tf1 / "src"), "py:leave:build", str(tmp_path / "out"), "--no-prefect", cwd=tmp_path,
              cap=TF_CAP)
    one_line_error(out, 3, "SystemExit")
    assert not (tmp_path / "out").exists()


def test_1_the_flow_refuses_a_builder_in_its_parameters_unless_its_deployment_allows_code(monkeypatch):
    from warmstart.flows.warm_start import warm_start
    from warmstart import UsageError
    from warmstart.tables import allowing_code, code_allowed

    for params in ({"target": "py:os:abort"}, {"target": "t", "rules": {"source_structure": "py:os:abort"}}):
        with pytest.raises(UsageError, match="names Python code"):
            warm_start.fn(source="s", output="o", **{"target": "t", **params})
    assert not code_allowed("py:os:abort")
    with allowing_code(typed=["py:m:typed"]):  # the CLI's TARGET
        assert code_allowed("py:m:typed") and not code_allowed("py:os:abort")
    monkeypatch.setenv("WARMSTART_ALLOW_CODE", "1")
    assert code_allowed("py:os:abort")


# --------------------------------------------------------------------------- 4. unbounded reads, special files


def test_4_rules_from_dev_zero_or_a_fifo_are_refused_at_once(tf1, tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    for rules in ("/dev/zero", str(tmp_path / "fifo.yaml")):
        started = time.monotonic()
        out = cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", rules)
        one_line_error(out, 2, "not a regular file")
        assert time.monotonic() - started < 30


def test_4_a_vocabulary_from_dev_zero_is_refused_and_an_arbitrary_files_lines_are_not_told(tf1, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"transforms": [{"target": "emb", "vocab": {"old": "/dev/zero", "new": "/dev/zero"}}]}))
    one_line_error(cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", str(rules)), 3, "not a regular file")
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(f"password-{i}\n" for i in range(7)))
    rules.write_text(json.dumps({"transforms": [{"target": "emb", "vocab": {"old": str(secret), "new": str(secret)}}]}))
    out = cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", str(rules), "--json")
    assert out.returncode == 1
    reasons = " ".join(v["reason"] for v in json.loads(out.stdout)["variables"]).replace(str(secret), "FILE")
    assert "not the number of tokens" in reasons and "7" not in reasons and "password" not in reasons


def test_4_an_index_symlinked_to_dev_zero_and_fifo_sources_fail_fast(tf1, tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    for p in (tf1 / "src").iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    (d / "model.ckpt.index").unlink()
    (d / "model.ckpt.index").symlink_to("/dev/zero")
    one_line_error(cli("inspect", str(d)), 3, "not a regular file")
    os.mkfifo(tmp_path / "fifo.weights.h5")
    (tmp_path / "m.weights.json").write_text(json.dumps({"weight_map": {"layers/d/vars": ["fifo.weights.h5"]}}))
    for source in ("fifo.weights.h5", "m.weights.json"):
        started = time.monotonic()
        one_line_error(cli("inspect", str(tmp_path / source)), 3, "not a regular file")
        assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- 5-7. Keras files


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("keras-hostile")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="d")(inputs))
    model.save(root / "m.keras")
    model.save_weights(root / "m.weights.h5")
    return root


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", compression=compression) as out:
        for info in a.infolist():
            out.writestr(info.filename, replace.get(info.filename, a.read(info)))
    return dst


def test_5_a_config_json_nesting_200000_lists_is_a_typed_error(keras_files, tmp_path):
    deep = _rewrite(keras_files / "m.keras", tmp_path / "deep.keras", {"config.json": b"[" * 200_000 + b"]" * 200_000})
    one_line_error(cli("signature", str(deep), cap=TF_CAP), 3, "nested deeper than 200 levels")


def test_6_declared_dataset_sizes_are_checked_before_any_allocation(tmp_path):
    import h5py

    for name, kwargs in (("contiguous", {"shape": (450_000_000,)}), ("chunked", {"shape": (1 << 40,), "chunks": (1024,)})):
        path = tmp_path / f"{name}.weights.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("layers/dense/vars/0", dtype="f4", **kwargs)
        assert path.stat().st_size < 20_000
        one_line_error(cli("inspect", str(path)), 3, "declares", "bytes")


def test_7_a_keras_zip_bomb_is_refused_before_inflating(keras_files, tmp_path):
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", (keras_files / "m.keras").open("rb") and zipfile.ZipFile(
            keras_files / "m.keras").read("config.json"))
        with z.open("model.weights.h5", "w", force_zip64=True) as w:
            for _ in range(3 * 64):
                w.write(bytes(16 << 20))  # 3 GiB of zeros: ~3 MB deflated
    assert bomb.stat().st_size < 4 << 20
    started = time.monotonic()
    for args in (("inspect", str(bomb)), ("signature", str(bomb))):
        one_line_error(cli(*args, cap=TF_CAP), 3, "zip bomb")
    assert time.monotonic() - started < 60


def test_7_a_compressed_keras_member_is_inflated_once_and_read_by_range(keras_files, tmp_path):
    from warmstart.formats import open_source

    packed = _rewrite(keras_files / "m.keras", tmp_path / "packed.keras", {}, zipfile.ZIP_DEFLATED)
    reader, plain = open_source(str(packed)), open_source(str(keras_files / "m.weights.h5"))
    copy = Path(reader.shards[0].path)
    assert copy.is_file() and all(r.offset is not None for r in reader.records.values())  # one copy, read by range
    for key in plain.records:
        np.testing.assert_array_equal(reader.read(key), plain.read(key))
    del reader
    import gc

    gc.collect()
    assert not copy.exists()  # the inflated copy goes with its reader


# --------------------------------------------------------------------------- 8. regex and rules cost


def test_8_a_catastrophic_regex_plans_in_linear_time(tmp_path):
    """With a backtracking engine, ``(a|aa)+$`` over 45 a's and a mismatch takes ~fib(45) steps (hours)."""
    builders.tf1_checkpoint(tmp_path / "ckpt", {"a" * 45 + "_x": np.zeros(2, np.float32)})
    (tmp_path / "rules.yaml").write_text('include: ["(a|aa)+$", ".*"]\nexclude: ["(a*)*b"]\n')
    started = time.monotonic()
    out = cli("plan", str(tmp_path / "ckpt"), str(tmp_path / "ckpt"), "--rules", str(tmp_path / "rules.yaml"),
              timeout=60)
    assert out.returncode == 1 and "include[0] '(a|aa)+$' matches no target variable" in out.stderr, out.stderr
    assert time.monotonic() - started < 30
    (tmp_path / "bad.yaml").write_text('include: ["(?!head).*"]\n')
    one_line_error(cli("plan", str(tmp_path / "ckpt"), str(tmp_path / "ckpt"), "--rules", str(tmp_path / "bad.yaml")),
                   2, "RE2 syntax")


def test_8_huge_rules_are_refused_before_planning(tf1, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("exclude:\n" + "".join(f"  - 'x{i}/.*'\n" for i in range(200_000)))  # 3.3 MB
    started = time.monotonic()
    one_line_error(cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", str(big)), 2, "WARMSTART_MAX_RULES_BYTES")
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"exclude": [f"x{i}" for i in range(20_000)]}))
    one_line_error(cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", str(many)), 2,
                   "WARMSTART_MAX_RULES_ENTRIES")
    assert time.monotonic() - started < 60
    deep = tmp_path / "deep.yaml"
    deep.write_text("include: " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(cli("plan", str(tf1 / "src"), str(tf1 / "tpl"), "--rules", str(deep)), 2, "nested")


# --------------------------------------------------------------------------- 9. the rest


def test_9_a_weights_json_shard_symlinked_out_of_its_directory_is_refused(keras_files, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "m_00000.weights.h5").symlink_to(keras_files / "m.weights.h5")
    (tmp_path / "in" / "m.weights.json").write_text(
        json.dumps({"weight_map": {"layers/dense/vars": ["m_00000.weights.h5"]}}))
    one_line_error(cli("inspect", str(tmp_path / "in" / "m.weights.json")), 3, "symlink", "outside its directory")


def test_9_an_unreachable_prefect_api_is_one_line_exit_4_with_a_hint(tf1, tmp_path):
    out = cli("transfer", str(tf1 / "src"), str(tf1 / "tpl"), str(tmp_path / "out"),
              env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    one_line_error(out, 4, "does not answer", "--no-prefect")
    assert not (tmp_path / "out").exists()


def test_3_inspect_refuses_an_output_holding_the_in_progress_marker(tf1, tmp_path):
    import warmstart

    warmstart.transfer(str(tf1 / "src"), str(tf1 / "tpl"), str(tmp_path / "out"))
    (tmp_path / "out" / ".warmstart-incomplete").write_text("")
    for args in (("inspect", str(tmp_path / "out")), ("inspect", str(tmp_path / "out" / "model.ckpt"))):
        one_line_error(cli(*args), 3, "interrupted writing")


def test_1_an_allowed_builder_names_a_tf2_checkpoint_by_its_models_layers(tmp_path, monkeypatch):
    """The opt-in path: ``allow_code=True`` lets the rules' py: builder run (and only then)."""
    import tensorflow as tf
    from test_keras_names import encoder

    import warmstart

    prefix = str(tmp_path / "src" / "ckpt")
    tf.train.Checkpoint(model=encoder()).write(prefix)
    (tmp_path / "structure_of_source.py").write_text(
        "from test_keras_names import encoder\n\ndef build():\n    return encoder()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rules = {"on_missing": "init", "source_structure": "py:structure_of_source:build"}
    with pytest.raises(warmstart.UsageError, match="names Python code"):
        warmstart.plan(prefix, encoder(inserted=True), rules=rules)
    plan = warmstart.plan(prefix, encoder(inserted=True), rules=rules, allow_code=True)
    assert plan.ok and not plan.positional
    assert {e.target: e.source for e in plan.entries}["enc2/kernel"] == "enc2/kernel"
