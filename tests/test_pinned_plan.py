"""One plan from validation to publication: the plan records every input pinned by version and a digest;
executing a plan copies exactly what it was made from (a source directory's checkpoint as planned, not its
newest), and refuses, publishing nothing, when an input changed before or during the copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import builders
import numpy as np
import pytest

import warmstart
from warmstart.errors import InputChangedError

W = {"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "dense/bias": np.ones(3, np.float32)}
W_NEW = {k: v + 100 for k, v in W.items()}
ZERO = {k: np.zeros_like(v) for k, v in W.items()}


@pytest.fixture
def pair(tmp_path):
    """A source directory (checkpoint step 1, named by its state file) and a template."""
    builders.tf1_checkpoint(tmp_path / "src", W, step=1)
    builders.tf1_checkpoint(tmp_path / "tpl", ZERO)
    return tmp_path / "src", tmp_path / "tpl"


def _output_values(out: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return builders.load_values(tf.train.latest_checkpoint(str(out)))


def _nothing_published(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_a_plan_pins_every_input_it_was_made_from_and_has_a_digest(pair, tmp_path):
    src, tpl = pair
    vocab = tmp_path / "v.txt"
    vocab.write_text("a\nb\n")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(json.dumps({"exclude": ["nothing_at_all"], "on_missing": "init"}))
    plan = warmstart.plan(str(src), str(tpl), str(rules_file))
    assert [(i.role, i.name) for i in plan.inputs] == [("source", "main"), ("target", "target"), ("rules", "rules")]
    source = plan.inputs[0]
    assert source.given == str(src) and source.url.endswith("src/model.ckpt-1")  # the directory, resolved
    assert source.directory.endswith("/src")
    assert [Path(f.url).name for f in source.files] == ["model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001",
                                                        "model.ckpt-1.meta"]  # the .meta names its variables
    assert set(source.files[0].version) == {"size", "mtime_ns", "inode"}
    doc = plan.to_json()
    assert len(doc["digest"]) == 64 and doc["digest"] == plan.digest
    assert [i["role"] for i in doc["inputs"]] == ["source", "target", "rules"]
    # the same inputs plan to the same digest; a source written again (same bytes, new version) to another
    assert warmstart.plan(str(src), str(tpl), str(rules_file)).digest == plan.digest
    index = Path(source.files[0].url.removeprefix("file://"))
    index.write_bytes(index.read_bytes())
    assert warmstart.plan(str(src), str(tpl), str(rules_file)).digest != plan.digest


def test_a_plan_is_executed_on_the_checkpoint_it_was_made_from_not_the_directory_s_newest(pair, tmp_path):
    src, tpl = pair
    plan = warmstart.plan(str(src), str(tpl))
    builders.tf1_checkpoint(src, W_NEW, step=2)  # a training job writes a newer checkpoint: the state file moves
    assert warmstart.plan(str(src), str(tpl)).inputs[0].url.endswith("model.ckpt-2")
    report = warmstart.transfer(str(src), str(tpl), str(tmp_path / "out"), plan=plan)
    np.testing.assert_array_equal(_output_values(tmp_path / "out")["dense/kernel"], W["dense/kernel"])
    manifest = json.loads(Path(report.manifest.removeprefix("file://")).read_text())
    assert manifest["digest"] == plan.digest == report.to_json()["digest"]
    assert manifest["source"]["url"].endswith("model.ckpt-1")
    assert manifest["inputs"][0]["files"][0]["version"] == plan.inputs[0].files[0].to_json()["version"]


@pytest.mark.parametrize("changed", ["source", "template"])
def test_a_plan_whose_input_changed_is_refused_and_nothing_is_published(pair, tmp_path, changed):
    src, tpl = pair
    plan = warmstart.plan(str(src), str(tpl))
    if changed == "source":  # the same checkpoint written again in place
        builders.tf1_checkpoint(src, W_NEW, step=1)
    else:
        builders.tf1_checkpoint(tpl, W)
    out = tmp_path / "out"
    with pytest.raises(InputChangedError, match=f"{'source .main.' if changed == 'source' else 'target'} .* changed "
                                                "after the plan was made") as caught:
        warmstart.transfer(str(src), str(tpl), str(out), plan=plan)
    assert caught.value.exit_code == 4 and caught.value.input.role == ("source" if changed == "source" else "target")
    assert _nothing_published(out)


def test_an_input_written_again_during_the_copy_is_not_published(pair, tmp_path):
    """The inputs are checked again after the copy, before the state file and manifest: a source rewritten while
    its tensors were being read fails the run, and the output is left as it was found."""
    src, tpl = pair
    rewritten = []

    def progress(done, total, name):
        if not rewritten:
            builders.tf1_checkpoint(src, W_NEW, step=1)
            rewritten.append(name)

    out = tmp_path / "out"
    with pytest.raises(InputChangedError, match="source 'main'"):
        warmstart.transfer(str(src), str(tpl), str(out), progress=progress, chunk_bytes=8)
    assert rewritten and _nothing_published(out)


def test_a_plan_is_refused_for_other_inputs_rules_or_strategy(pair, tmp_path):
    src, tpl = pair
    plan = warmstart.plan(str(src), str(tpl))
    builders.tf1_checkpoint(tmp_path / "elsewhere", W)
    with pytest.raises(warmstart.UsageError, match="the plan was made for target"):
        warmstart.transfer(str(src), str(tmp_path / "elsewhere"), str(tmp_path / "o1"), plan=plan)
    with pytest.raises(warmstart.UsageError, match="not the rules the plan was made with"):
        warmstart.transfer(str(src), str(tpl), str(tmp_path / "o2"), plan=plan, rules={"on_missing": "init"})
    with pytest.raises(warmstart.UsageError, match="made for strategy 'auto', not 'restore'"):
        warmstart.transfer(str(src), str(tpl), str(tmp_path / "o3"), plan=plan, strategy="restore")
    # the same inputs spelled as the prefix the directory resolved to: accepted
    warmstart.transfer(plan.inputs[0].url, str(tpl), str(tmp_path / "o4"), plan=plan)


def test_the_cli_prints_the_digest_in_plan_and_transfer_json(pair, tmp_path):
    src, tpl = pair
    env = {**os.environ, "PREFECT_API_URL": ""}
    run = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", str(src), str(tpl), "--json"],
                         capture_output=True, text=True, env=env)
    doc = json.loads(run.stdout)
    assert run.returncode == 0 and len(doc["digest"]) == 64 and doc["inputs"][0]["url"].endswith("model.ckpt-1")
    run = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(src), str(tpl),
                          str(tmp_path / "out"), "--json", "--no-prefect"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["digest"] == doc["digest"]
