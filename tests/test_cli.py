"""The ``warmstart`` console script, run as a user runs it: exit codes, JSON documents, messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from servers import upload_dir

from warmstart.examples import write_example_set


def run(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "warmstart.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def test_inspect_json_lists_every_variable(example):
    out = run("inspect", example.source, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["source"].endswith("model.ckpt-1000")
    names = {v["name"]: v for v in doc["variables"]}
    assert names["bert/embeddings/word_embeddings"] == {
        "name": "bert/embeddings/word_embeddings", "dtype": "float32", "shape": [1000, 32], "bytes": 128000,
        "key": "bert/embeddings/word_embeddings"}
    assert "global_step" in names and "bert/pooler/dense/kernel/adam_m" in names


def test_inspect_human_output_is_a_table(example):
    out = run("inspect", example.source)
    assert out.returncode == 0
    assert "bert/encoder/layer_0/attention/self/query/kernel" in out.stdout
    assert "106 variables" in out.stdout


def test_bert_into_renamed_grown_model_plan(example):
    """The issue's scenario: renamed encoder copied, grown embedding skipped for its shape, new head
    kept at its initial value, slots unused, coverage reported."""
    out = run("plan", example.source, example.target, "--rules", example.rules, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "ok"
    by_target = {v["target"]: v for v in doc["variables"]}
    encoder = [v for t, v in by_target.items() if t.startswith("model/encoder/")]
    assert encoder and all(v["action"] == "copy" and v["source"] == "bert/" + v["target"][len("model/"):]
                           for v in encoder)
    emb = by_target["model/embeddings/word_embeddings"]
    assert (emb["action"], emb["source_shape"], emb["shape"]) == ("skip", [1000, 32], [1200, 32])
    assert {by_target[t]["action"] for t in ("head/dense/kernel", "head/dense/bias")} == {"init"}
    assert by_target["global_step"]["action"] == "init"
    assert "bert/encoder/layer_0/output/dense/kernel/adam_m" in doc["unused_source"]
    assert 0.3 < doc["coverage"] < 1.0


def test_same_plan_without_rules_fails_with_exit_1(example):
    out = run("plan", example.source, example.target)
    assert out.returncode == 1
    assert "the plan does not satisfy the rules" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("plan", example.source, example.target, "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["status"] == "failed" and len(doc["errors"]) == 36


def test_missing_input_exits_3_with_one_line(tmp_path):
    out = run("inspect", str(tmp_path / "nope"))
    assert out.returncode == 3
    assert out.stderr.strip().count("\n") == 0 and "no checkpoint at" in out.stderr
    out = run("inspect", str(tmp_path / "nope"), "--json")
    assert out.returncode == 3 and json.loads(out.stdout)["status"] == "failed"


def test_corrupt_index_exits_3(tmp_path, example):
    bad = tmp_path / "bad.index"
    bad.write_bytes(b"\x00" * 100)
    out = run("inspect", str(tmp_path / "bad"))
    assert out.returncode == 3 and "not a valid checkpoint index" in out.stderr and "Traceback" not in out.stderr


def test_invalid_rules_exit_2(tmp_path, example):
    rules = tmp_path / "r.yaml"
    rules.write_text("on_missing: maybe\n")
    out = run("plan", example.source, example.target, "--rules", str(rules))
    assert out.returncode == 2 and "on_missing" in out.stderr
    assert run("plan", example.source).returncode == 2  # argparse usage error


def test_signature_round_trip_gives_the_same_plan(tmp_path, example):
    sig = tmp_path / "target.json"
    out = run("signature", example.target, "-o", str(sig))
    assert out.returncode == 0, out.stderr
    assert json.loads(sig.read_text())["format"] == "warmstart.signature"
    a = json.loads(run("plan", example.source, example.target, "--rules", example.rules, "--json").stdout)
    b = json.loads(run("plan", example.source, str(sig), "--rules", example.rules, "--json").stdout)
    assert a["variables"] == b["variables"] and a["coverage"] == b["coverage"]


@pytest.mark.integration
def test_inspect_on_s3_configured_only_by_aws_variables(s3_server, s3_bucket, example):
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/pretrained")
    out = run("inspect", f"{s3_bucket}/pretrained", "--json", env=s3_server.env())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["source"] == f"{s3_bucket}/pretrained/model.ckpt-1000"
    assert len(doc["variables"]) == 106


def test_flows_give_the_ephemeral_server_time_to_start_on_a_busy_machine():
    """Prefect's default (20 s) made CI's demo fail under load; the flow packages raise it before Prefect
    reads its settings, and keep a value the user set."""
    code = ("import warmstart.flows.warm_start\n"
            "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s\n"
            "print(s.value())")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    repo = Path(__file__).resolve().parents[1]
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=repo)
    assert default.stdout.strip() == "90", default.stderr
    mine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                          env={**env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "33"})
    assert mine.stdout.strip() == "33", mine.stderr


def test_demo_command_runs_the_example(tmp_path):
    out = run("demo", "--dir", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr
    assert "plan without rules: strict, so it fails" in out.stdout
    assert "status ok" in out.stdout
    # the flow's result in a few lines, not the summary dict
    assert re.search(r"ok: published file://\S+warm-started\n  33 variables copied, 4 kept their initial value "
                     r"\(coverage 42\.5%\); [0-9.]+ KiB written in [0-9.]+ s \(strategy stream\)\n  plan digest [0-9a-f]{16}; "
                     r"manifest file://\S+warmstart\.json", out.stdout), out.stdout
    assert "{'" not in out.stdout
