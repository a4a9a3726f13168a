"""A TF1 source checkpoint saved by a Saver that stores variables under other keys than their op names
(``tf.compat.v1.train.Saver({"b": a, "a": b})``) is named by the ``.meta`` beside it, as a ``.meta`` target and a TF1
template are: a model warm-started from a checkpoint written by the same code matches itself by op name, on every
strategy, and the output restored through the target's own MetaGraph holds exactly what the source model held.
A ``.meta`` that disagrees with its checkpoint is refused (nothing published); the ``.meta`` is pinned with the
source. And a ``.meta`` target whose Saver saves only some variables (``Saver(trainable_variables())``) keeps the
others under their op names. Every model is built, trained and saved by TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import shutil
from pathlib import Path

import builders  # noqa: E402
import pytest
import tensorflow as tf  # noqa: E402  (a hard dependency: missing must fail, not skip)
import yaml
from builders import (SAVER_KEYED_EXPECTED, SAVER_KEYED_INITIAL, SAVER_KEYED_SOURCE, assert_exact,  # noqa: E402
                      restored_as_users_do)

import warmstart  # noqa: E402
from warmstart.cli import main  # noqa: E402
from warmstart.errors import CorruptCheckpointError, InputChangedError  # noqa: E402

SOURCE, INITIAL, EXPECTED = SAVER_KEYED_SOURCE, SAVER_KEYED_INITIAL, SAVER_KEYED_EXPECTED  # by op name
RULES = {"on_missing": "init"}
KEYS = {  # the Saver's keys by op name, one code for source and target
    "permutation": {"a": "b", "b": "a", "c": "c", "p": "p"},
    "renamed": {"a": "renamed/a", "b": "renamed/b", "c": "c", "p": "renamed/p"},
}
RUNS = [("meta", "restore"), ("meta", "assign"), ("template", "stream"), ("template", "restore"),
        ("template", "assign")]


def _saved(directory: Path, values: dict, keys: dict | None) -> dict:
    own = None if keys is None else {name: keys[name] for name in values}
    return builders.saver_keyed_checkpoint(directory, values, own, partitioned={"p": 3})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per scenario the source (a, b, p) and the target (a, b, c, p), both saved by the same renaming Saver with
    their .meta; "default": a target with a default Saver."""
    root = tmp_path_factory.mktemp("models")
    found = {name: (_saved(root / f"{name}-src", SOURCE, keys), _saved(root / f"{name}-tgt", INITIAL, keys))
             for name, keys in KEYS.items()}
    found["default"] = (None, _saved(root / "default-tgt", INITIAL, None))
    return found


def _target(model: dict, kind: str) -> str:
    return model["meta"] if kind == "meta" else model["prefix"]


def _copy(model: dict, directory: Path) -> Path:
    shutil.copytree(model["dir"], directory)
    return directory


@pytest.mark.parametrize("target_kind,strategy", RUNS, ids=[f"{k}-{s}" for k, s in RUNS])
@pytest.mark.parametrize("scenario", list(KEYS))
def test_a_source_and_target_saved_by_the_same_renaming_saver_match_by_op_name(models, tmp_path, scenario,
                                                                                target_kind, strategy):
    source, target = models[scenario]
    assert builders.load_values(source["prefix"]).keys() == {KEYS[scenario][n] for n in SOURCE}  # stored by key
    plan = warmstart.plan(source["prefix"], _target(target, target_kind), rules=RULES, strategy=strategy)
    copied = {e.target: (e.source, e.source_key) for e in plan.entries if e.action == "copy"}
    assert copied == {n: (n, KEYS[scenario][n]) for n in SOURCE}
    warmstart.transfer(source["prefix"], _target(target, target_kind), tmp_path / "out", plan=plan)
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "out"), EXPECTED)


@pytest.mark.parametrize("target_kind,strategy", [("meta", "restore"), ("template", "stream")])
def test_a_renaming_sources_variables_reach_a_default_saver_target_by_op_name(models, tmp_path, target_kind,
                                                                              strategy):
    source, _ = models["permutation"]
    target = models["default"][1]
    warmstart.transfer(source["prefix"], _target(target, target_kind), tmp_path / "out", rules=RULES,
                       strategy=strategy)
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "out"), EXPECTED)
    assert_exact(builders.load_values(tmp_path / "out" / "model.ckpt"), EXPECTED)  # a default Saver's op names


def test_a_named_source_is_named_by_its_metagraph_too(models, tmp_path):
    source, target = models["renamed"]
    run_b = _saved(tmp_path / "run_b", {n: v + 100 for n, v in SOURCE.items()}, KEYS["permutation"])
    rules = {**RULES, "sources": {"run_b": run_b["prefix"]}, "fill_from": [["b", "run_b"]]}
    warmstart.transfer(source["prefix"], target["prefix"], tmp_path / "out", rules=rules)
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "out"), {**EXPECTED, "b": SOURCE["b"] + 100})


def test_a_metagraph_that_does_not_rename_changes_nothing(models, tmp_path):
    target = models["default"][1]
    without = _copy(target, tmp_path / "without")
    (without / "model.ckpt.meta").unlink()
    table = warmstart.read_table(target["prefix"])
    assert table.variables == warmstart.read_table(str(without / "model.ckpt")).variables
    assert all(v.key == v.name for v in table.variables)
    pinned = {name: [f.url for f in warmstart.plan(prefix, target["prefix"], rules=RULES).inputs[0].files]
              for name, prefix in (("with", target["prefix"]), ("without", str(without / "model.ckpt")))}
    assert any(url.endswith("model.ckpt.meta") for url in pinned["with"])  # read, so pinned
    assert not any(url.endswith(".meta") for url in pinned["without"])


def test_inspect_names_such_a_source_by_op_name_with_its_keys(models, capsys):
    source, _ = models["renamed"]
    assert main(["inspect", source["prefix"], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {v["name"]: v["key"] for v in doc["variables"]} == {n: KEYS["renamed"][n] for n in SOURCE}


def _keys_node(meta) -> str:
    return next(n for n in meta.graph_def.node if n.op == "SaveV2").input[1]


def _set_keys(meta_path: Path, keys: list[bytes]) -> None:
    meta = tf.compat.v1.MetaGraphDef.FromString(meta_path.read_bytes())
    tensor = next(n for n in meta.graph_def.node if n.name == _keys_node(meta)).attr["value"].tensor
    del tensor.string_val[:]
    tensor.string_val.extend(keys)
    meta_path.write_bytes(meta.SerializeToString())


def test_a_source_whose_metagraph_disagrees_with_its_checkpoint_is_refused(models, tmp_path):
    source, target = models["permutation"]
    copy = _copy(source, tmp_path / "src")
    meta = copy / "model.ckpt.meta"
    _set_keys(meta, [b"b", b"elsewhere", b"p", b"p", b"p"])  # a -> b, b -> elsewhere, p
    with pytest.raises(CorruptCheckpointError) as caught:
        warmstart.plan(str(copy / "model.ckpt"), target["prefix"], rules=RULES)
    for words in (str(meta), str(copy / "model.ckpt"), "'elsewhere'", "not written by the same Saver",
                  "move that .meta away"):
        assert words in str(caught.value), (words, str(caught.value))
    assert main(["transfer", str(copy / "model.ckpt"), target["prefix"], str(tmp_path / "out"), "--no-prefect"]) == 3
    with pytest.raises(CorruptCheckpointError, match="'elsewhere'"):
        warmstart.transfer(str(copy / "model.ckpt"), target["prefix"], tmp_path / "out", rules=RULES)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    meta.write_bytes(b"not a MetaGraph")
    with pytest.raises(CorruptCheckpointError, match="is not a TF MetaGraph .* move that .meta away"):
        warmstart.read_table(str(copy / "model.ckpt"))


def test_a_source_metagraph_replaced_after_the_plan_is_refused(models, tmp_path):
    source, target = models["permutation"]
    copy = _copy(source, tmp_path / "src")
    plan = warmstart.plan(str(copy / "model.ckpt"), target["prefix"], rules=RULES)
    meta = copy / "model.ckpt.meta"
    shutil.copy(meta, tmp_path / "other.meta")
    os.replace(tmp_path / "other.meta", meta)  # the same bytes, another file
    with pytest.raises(InputChangedError, match="source 'main' .* changed after the plan was made: .*model.ckpt.meta is now"):
        warmstart.transfer(str(copy / "model.ckpt"), target["prefix"], tmp_path / "out", plan=plan)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.integration
def test_a_renaming_source_on_s3_is_named_by_the_metagraph_beside_it(models, s3_server, s3_bucket, monkeypatch,
                                                                      tmp_path):
    from servers import clear_fs_caches, upload_dir

    source, target = models["permutation"]
    upload_dir(s3_server.filesystem(), source["dir"], f"{s3_bucket}/run")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    remote = f"{s3_bucket}/run"
    assert {v.name: v.key for v in warmstart.read_table(remote).variables} == {
        n: KEYS["permutation"][n] for n in SOURCE}
    warmstart.transfer(remote, target["prefix"], tmp_path / "lib", rules=RULES)
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "lib"), EXPECTED)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(RULES))
    assert main(["transfer", remote, target["meta"], str(tmp_path / "cli"), "--rules", str(tmp_path / "rules.yaml"),
                 "--no-prefect"]) == 0
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "cli"), EXPECTED)


@pytest.mark.integration
def test_the_flow_plans_a_renaming_s3_source_as_the_library_does(models, prefect_api, s3_server, s3_bucket,
                                                                 monkeypatch, tmp_path):
    from servers import clear_fs_caches, upload_dir

    from warmstart.flows.warm_start import warm_start
    from warmstart.planning import Rules

    source, target = models["renamed"]
    upload_dir(s3_server.filesystem(), source["dir"], f"{s3_bucket}/run")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    summary = warm_start(source=f"{s3_bucket}/run", target=target["prefix"], output=str(tmp_path / "out"),
                         rules=Rules(on_missing="init"))
    assert summary["status"] == "ok"
    assert_exact(restored_as_users_do(target["meta"], tmp_path / "out"), EXPECTED)
    source_pin = next(i for i in summary["inputs"] if i["role"] == "source")
    assert any(f["url"].endswith("run/model.ckpt.meta") and f["version"]["etag"] for f in source_pin["files"])


# ----------------------------------------------------------------------------- a Saver of some variables


def _trained_model(directory: Path, saver_of_trainables: bool, shift: float) -> dict:
    """``loss = sum((x @ w + bias)^2)`` with Adam and a global step, one training step run (the slots hold values);
    saved by ``Saver(trainable_variables())`` (only w and bias; its .meta too) or by a default Saver (every
    variable)."""
    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0, 2.0], [3.0, 4.0]]) + shift)
        bias = tf.compat.v1.get_variable("bias", initializer=tf.constant([0.5, -0.5]) + shift)
        loss = tf.reduce_sum(tf.square(tf.matmul(tf.ones([1, 2]), w) + bias))
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        saver = tf.compat.v1.train.Saver(tf.compat.v1.trainable_variables() if saver_of_trainables else None)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            initial = {v.op.name: value for v, value in zip(tf.compat.v1.global_variables(),
                                                            sess.run(tf.compat.v1.global_variables()))}
            sess.run(train)
            values = {v.op.name: value for v, value in zip(tf.compat.v1.global_variables(),
                                                           sess.run(tf.compat.v1.global_variables()))}
            prefix = saver.save(sess, str(directory / "model.ckpt"))
    return {"prefix": prefix, "meta": prefix + ".meta", "values": values, "initial": initial}


@pytest.fixture(scope="module")
def trainables(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainables")
    return _trained_model(root / "src", False, 5.0), _trained_model(root / "tgt", True, 0.0)


@pytest.mark.parametrize("target_kind,strategy", RUNS, ids=[f"{k}-{s}" for k, s in RUNS])
def test_a_metagraph_of_a_saver_of_the_trainable_variables_keeps_the_others_by_op_name(trainables, tmp_path,
                                                                                       target_kind, strategy):
    source, target = trainables
    unsaved = {"global_step", "w/Adam", "w/Adam_1", "bias/Adam", "bias/Adam_1", "beta1_power", "beta2_power"}
    assert unsaved < set(source["values"]) and not unsaved & set(builders.load_values(target["prefix"]))
    if target_kind == "meta":
        table = warmstart.signature_of(target["meta"])
        assert unsaved < set(table) and all(v.key == v.name for v in table.variables)
    report = warmstart.transfer(source["prefix"], _target(target, target_kind), tmp_path / "out", strategy=strategy)
    planned = {e.target: source["values"][e.source] if e.action == "copy" else target["initial"][e.target]
               for e in report.plan.entries}  # the default rules keep global_step and the Adam slots as initialised
    assert planned.keys() == (set(source["values"]) if target_kind == "meta" else {"w", "bias"})
    restored = restored_as_users_do(target["meta"], tmp_path / "out", trainable_only=True)
    assert_exact(restored, {n: source["values"][n] for n in ("w", "bias")})
    # a .meta target's output holds the unsaved variables too, under their op names; a template's holds what the
    # template holds, what its Saver saved
    assert_exact(builders.load_values(tmp_path / "out" / "model.ckpt"), planned)


@pytest.mark.parametrize("rules, excluded", [
    ({"exclude": ["b"]}, {"b"}),                                    # a pattern for b: never a, whose key is "b"
    ({"include": ["a|c|p"]}, {"b"}),                                # include by name: b out, though a is stored as "b"
])
def test_a_rule_never_reaches_a_variable_through_a_key_that_is_another_variables_name(models, tmp_path, rules,
                                                                                     excluded):
    src, tgt = models["permutation"]
    plan = warmstart.plan(src["prefix"], tgt["meta"], rules={**RULES, **rules})
    not_copied = {e.target for e in plan.entries if e.action != "copy"}
    assert {"a", "b"} & not_copied == excluded, [(e.target, e.action, e.reason) for e in plan.entries]
    from warmstart.tables import table_from_meta_graph

    table = table_from_meta_graph(tgt["meta"])
    assert table["a"].key == "b" and "b" not in table["a"].aliases and table.find("b").name == "b"


def test_a_source_variable_is_found_by_its_name_before_another_variables_key(models, tmp_path):
    src, tgt = models["permutation"]
    plan = warmstart.plan(src["prefix"], tgt["prefix"], rules={**RULES, "rename": [["^a$", "b"]]})  # a from b
    entry = next(e for e in plan.entries if e.target == "a")
    assert (entry.source, entry.source_key) == ("b", "a")  # variable b, stored under "a" by the renaming Saver
