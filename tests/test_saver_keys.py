"""A TF1 MetaGraph whose own Saver stores variables under other keys than their op names
(``tf.compat.v1.train.Saver({"b": a, "a": b})``): the output is written under that Saver's keys, so that the
usual restore (``import_meta_graph(meta)`` then ``.restore``) gives every variable its planned value, on every
strategy, for a ``.meta`` target and a template with its ``.meta``; where the graph does not say one key per
variable, a TargetError names the file and the variable or key. Every graph is built and saved by TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
from pathlib import Path

import builders  # noqa: E402
from builders import (SAVER_KEYED_EXPECTED, SAVER_KEYED_INITIAL, SAVER_KEYED_SOURCE, assert_exact,  # noqa: E402
                      restored_as_users_do)
import pytest
import tensorflow as tf  # noqa: E402  (a hard dependency: missing must fail, not skip)

import warmstart  # noqa: E402
from warmstart import TargetError  # noqa: E402
from warmstart.formats.meta_graph import parse_meta_graph_def  # noqa: E402
from warmstart.formats.saver_keys import MAX_CHAIN, saver_keys  # noqa: E402

SOURCE, INITIAL, EXPECTED = SAVER_KEYED_SOURCE, SAVER_KEYED_INITIAL, SAVER_KEYED_EXPECTED
RULES = {"on_missing": "init"}

SCENARIOS = {  # name -> (the Saver's keys by op name, builder options)
    "default": (None, {}),
    "permutation": ({"a": "b", "b": "a", "c": "c", "p": "p"}, {}),
    "renamed": ({"a": "renamed/a", "b": "renamed/b", "c": "c", "p": "renamed/p"}, {}),
    "sharded": ({"a": "b", "b": "a", "c": "x/c", "p": "x/p"}, {"sharded": True}),
    "ref": ({"a": "b", "b": "renamed/b", "c": "a", "p": "renamed/p"}, {"use_resource": False}),
}
RUNS = [("meta", "restore"), ("meta", "assign"), ("template", "stream"), ("template", "restore"),
        ("template", "assign")]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return builders.tf1_checkpoint(tmp_path_factory.mktemp("source"), SOURCE)["prefix"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each scenario's model, saved by its own Saver (a template checkpoint with its .meta)."""
    root = tmp_path_factory.mktemp("models")
    return {name: builders.saver_keyed_checkpoint(root / name, INITIAL, keys, partitioned={"p": 3}, **options)
            for name, (keys, options) in SCENARIOS.items()}


def template_copy(model: dict, directory: Path) -> Path:
    """A copy of the model's saved files (checkpoint, .meta, state file) in ``directory``."""
    directory.mkdir()
    for f in Path(model["dir"]).iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    return directory


@pytest.mark.parametrize("target_kind,strategy", RUNS, ids=[f"{k}-{s}" for k, s in RUNS])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_output_restores_through_the_metagraphs_own_saver(models, source, tmp_path, scenario, target_kind,
                                                               strategy):
    model = models[scenario]
    target = model["meta"] if target_kind == "meta" else model["prefix"]
    report = warmstart.transfer(source, target, tmp_path / "out", rules=RULES, strategy=strategy)
    assert report.strategy == strategy
    assert_exact(restored_as_users_do(model["meta"], tmp_path / "out"), EXPECTED)
    keys = SCENARIOS[scenario][0] or {name: name for name in INITIAL}
    assert sorted(builders.load_values(tmp_path / "out" / "model.ckpt")) == sorted(keys.values())


@pytest.mark.parametrize("target_kind", ["meta", "template"])
def test_variables_keep_their_op_names_and_take_the_savers_keys(models, source, target_kind):
    model = models["renamed"]
    target = model["meta"] if target_kind == "meta" else model["prefix"]
    table = warmstart.signature_of(target)
    assert {v.name: v.key for v in table.variables} == SCENARIOS["renamed"][0]
    assert table["p"].partitions == 3
    plan = warmstart.plan(source, target, rules=RULES)
    entries = {e["target"]: e for e in plan.to_json()["variables"]}
    assert entries["a"]["source"] == "a" and entries["a"]["target_key"] == "renamed/a"
    assert entries["c"]["action"] == "init" and entries["c"]["target_key"] == "c"
    assert warmstart.signature_of(target).find("renamed/b").name == "b"  # the key is an alias rules accept


def test_a_default_savers_metagraph_is_keyed_by_op_names_as_before(models):
    for target in (models["default"]["meta"], models["default"]["prefix"]):
        assert all(v.key == v.name for v in warmstart.signature_of(target).variables)


def test_a_v1_savers_keys_are_read_from_its_save_slices_op(tmp_path, source):
    model = builders.saver_keyed_checkpoint(tmp_path / "v1", INITIAL, SCENARIOS["renamed"][0],
                                            partitioned={"p": 3}, save=False, saver_version=1)
    assert {v.name: v.key for v in warmstart.signature_of(model["meta"]).variables} == SCENARIOS["renamed"][0]
    warmstart.transfer(source, model["meta"], tmp_path / "out", rules=RULES)
    assert_exact(restored_as_users_do(model["meta"], tmp_path / "out"), EXPECTED)


def test_a_text_format_metagraph_beside_a_template_is_read_too(models, source, tmp_path):
    from google.protobuf import text_format

    model = models["permutation"]
    template = template_copy(model, tmp_path / "tpl")
    meta = tf.compat.v1.MetaGraphDef.FromString(Path(model["meta"]).read_bytes())
    (template / "model.ckpt.meta").write_text(text_format.MessageToString(meta))
    assert warmstart.signature_of(str(template / "model.ckpt"))["a"].key == "b"
    warmstart.transfer(source, str(template / "model.ckpt"), tmp_path / "out", rules=RULES)
    assert_exact(restored_as_users_do(model["meta"], tmp_path / "out"), EXPECTED)


# ----------------------------------------------------------------------------- refusals


def edited_meta(model: dict, path: Path, edit) -> str:
    """A copy of the model's MetaGraph (TF's own proto), changed by ``edit(meta_graph)``."""
    meta = tf.compat.v1.MetaGraphDef.FromString(Path(model["meta"]).read_bytes())
    edit(meta)
    path.write_bytes(meta.SerializeToString())
    return str(path)


def node(meta, name: str):
    return next(n for n in meta.graph_def.node if n.name == name)


def set_strings(meta, name: str, values: list[bytes]) -> None:
    tensor = node(meta, name).attr["value"].tensor
    del tensor.string_val[:]
    tensor.string_val.extend(values)


def _refused(target: str, *words: str) -> None:
    with pytest.raises(TargetError) as caught:
        warmstart.signature_of(target)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def _saved_a_only(tmp_path: Path, other: str, key_of_a: str) -> str:
    """A .meta of variables ``a`` and ``other`` whose Saver saves only ``a``, under ``key_of_a``."""
    graph = tf.Graph()
    with graph.as_default():
        a = tf.compat.v1.get_variable("a", initializer=tf.constant([1.0]))
        tf.compat.v1.get_variable(other, initializer=tf.constant([2.0]))
        tf.compat.v1.train.Saver({key_of_a: a}).export_meta_graph(str(tmp_path / "m.meta"))
    return str(tmp_path / "m.meta")


def test_a_variable_the_saver_does_not_save_keeps_its_op_name_as_its_key(tmp_path):
    table = warmstart.signature_of(_saved_a_only(tmp_path, "forgotten", "renamed/a"))
    assert {v.name: v.key for v in table.variables} == {"a": "renamed/a", "forgotten": "forgotten"}


def test_an_unsaved_variable_whose_op_name_the_saver_uses_for_another_is_refused(tmp_path):
    meta = _saved_a_only(tmp_path, "b", "b")
    _refused(meta, meta, "variable 'b'", "variable 'a' under the key 'b'", "two values under one key")


def test_a_saved_tensor_that_is_no_variable_is_refused(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("a", initializer=tf.constant([1.0]))
        tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, -1, name="table")
        tf.compat.v1.train.Saver().export_meta_graph(str(tmp_path / "m.meta"))
    _refused(str(tmp_path / "m.meta"), str(tmp_path / "m.meta"), "'table-keys'", "LookupTableExportV2")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A model with a, b, c and partitioned p whose Saver swaps a and b, exported (no checkpoint)."""
    return builders.saver_keyed_checkpoint(tmp_path_factory.mktemp("plain"), INITIAL, SCENARIOS["permutation"][0],
                                           partitioned={"p": 3}, save=False)


def _save_op(meta):
    return next(n for n in meta.graph_def.node if n.op == "SaveV2")


def _keys_node(meta) -> str:
    return _save_op(meta).input[1]


EDITS = {
    "save tensor absent": (lambda m: setattr(m.saver_def, "save_tensor_name", "save/gone:0"), ["'save/gone:0'"]),
    "save op absent": (lambda m: m.graph_def.node.remove(_save_op(m)), ["depends on no save op"]),
    "key saved twice": (lambda m: set_strings(m, _keys_node(m), [b"a", b"a", b"c", b"p", b"p", b"p"]),
                        ["under the key 'a'"]),
    "two keys for a variable": (
        lambda m: _save_op(m).input.__setitem__(4, _save_op(m).input[3]), ["under two keys"]),
    "a part saved whole": (
        lambda m: set_strings(m, _save_op(m).input[2], [b"", b"", b"", b"6 2 0,2:0,2", b"", b"6 2 4,2:0,2"]),
        ["whole under the key 'p'", "'p/part_1'"]),
    "keys not a constant": (lambda m: setattr(node(m, _keys_node(m)), "op", "Placeholder"), ["are not a constant"]),
    "too few keys": (lambda m: set_strings(m, _keys_node(m), []), ["0 strings"]),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_saver_def_that_does_not_say_one_key_per_variable_is_refused(plain, tmp_path, edit):
    change, words = EDITS[edit]
    meta = edited_meta(plain, tmp_path / "m.meta", change)
    _refused(meta, meta, *words)


def test_the_saved_keys_are_in_the_order_the_save_op_lists_them(plain):
    meta = tf.compat.v1.MetaGraphDef.FromString(Path(plain["meta"]).read_bytes())
    assert [s.decode() for s in node(meta, _keys_node(meta)).attr["value"].tensor.string_val] == \
        ["a", "b", "c", "p", "p", "p"]  # what EDITS rewrite


def test_a_pass_through_chain_longer_than_the_cap_is_refused_and_a_long_graph_is_walked_without_recursion(
        plain, tmp_path):
    def chain(meta, length: int, to: str) -> str:
        previous = to
        for i in range(length):
            n = meta.graph_def.node.add(name=f"chain/{to}/{i}", op="Identity")
            n.input.append(previous)
            previous = n.name
        return previous

    def long_chain(meta):
        save = _save_op(meta)
        save.input[3] = chain(meta, MAX_CHAIN + 1, save.input[3])

    meta = edited_meta(plain, tmp_path / "chain.meta", long_chain)
    _refused(meta, meta, f"more than {MAX_CHAIN}")

    def deep_dependencies(meta):  # the save tensor waits on 200,000 nodes in a line: walked, not recursed
        control = node(meta, meta.saver_def.save_tensor_name.split(":")[0])
        control.input.append("^" + chain(meta, 200_000, "save/Const"))

    deep = edited_meta(plain, tmp_path / "deep.meta", deep_dependencies)
    assert warmstart.signature_of(deep)["a"].key == "b"


def test_a_template_whose_metagraph_disagrees_with_its_checkpoint_is_refused(models, tmp_path, source):
    model = models["permutation"]
    template = template_copy(model, tmp_path / "tpl")
    edited_meta(model, template / "model.ckpt.meta", lambda m: set_strings(m, _keys_node(m), [
        b"b", b"elsewhere", b"c", b"p", b"p", b"p"]))
    with pytest.raises(TargetError, match="'elsewhere', which .* does not hold"):
        warmstart.plan(source, str(template / "model.ckpt"), rules=RULES)
    edited_meta(model, template / "model.ckpt.meta", lambda m: set_strings(m, _keys_node(m), [
        b"b", b"b", b"c", b"p", b"p", b"p"]))
    with pytest.raises(TargetError, match="under the key 'b'"):
        warmstart.transfer(source, str(template / "model.ckpt"), tmp_path / "out", rules=RULES, strategy="stream")
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_the_resolver_reads_tfs_own_proto_and_its_own_alike(plain):
    data = Path(plain["meta"]).read_bytes()
    ours = saver_keys(parse_meta_graph_def(data, "m"), "m")
    assert ours == saver_keys(tf.compat.v1.MetaGraphDef.FromString(data), "m")
    assert dict(ours.keys) == {"a": "b", "b": "a", "c": "c", "p": "p"} and ours.renames
    assert not ours.unsaved and not ours.others


def test_a_signature_file_of_the_metagraph_carries_the_keys_into_its_plans(models, source, tmp_path):
    from warmstart.cli import main

    assert main(["signature", models["renamed"]["meta"], "-o", str(tmp_path / "sig.json")]) == 0
    doc = json.loads((tmp_path / "sig.json").read_text())
    assert {v["name"]: v.get("key", v["name"]) for v in doc["variables"]} == SCENARIOS["renamed"][0]
    plan = warmstart.plan(source, str(tmp_path / "sig.json"), rules=RULES)
    assert {e.target: e.target_key for e in plan.entries} == SCENARIOS["renamed"][0]


def _projection_graph(keys: dict[str, str] | None):
    """``y = x @ a + 2 (x @ b)``, a and b both [2, 2], with a Saver keyed by ``keys`` (None: a default Saver)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        a = tf.compat.v1.get_variable("a", initializer=tf.constant([[1.0, 2.0], [3.0, 4.0]]))
        b = tf.compat.v1.get_variable("b", initializer=tf.constant([[-1.0, 0.5], [0.25, -2.0]]))
        tf.identity(tf.matmul(x, a) + 2.0 * tf.matmul(x, b), name="y")
        saver = tf.compat.v1.train.Saver(None if keys is None else {keys["a"]: a, keys["b"]: b})
    return graph, saver


def test_the_certificate_reads_the_target_graph_by_its_savers_keys(tmp_path):
    graph, saver = _projection_graph(None)
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        session.run([v.assign(v * 3.0 + 1.0) for v in tf.compat.v1.global_variables()])  # trained: not the target's
        saver.save(session, str(tmp_path / "src" / "model.ckpt"))
    graph, saver = _projection_graph({"a": "b", "b": "a"})
    with graph.as_default():
        saver.export_meta_graph(str(tmp_path / "target.meta"))
    rules = {"verify": {"pairs": [{"source": "y:0", "target": "y:0"}]}}
    report = warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "target.meta"), tmp_path / "out", rules=rules,
                                verify=True)
    assert report.certificate.passed and report.certificate.checks[0].compared > 0
    expected = builders.load_values(tmp_path / "src" / "model.ckpt")
    assert_exact(restored_as_users_do(str(tmp_path / "target.meta"), tmp_path / "out"), expected)
