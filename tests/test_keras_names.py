"""Keras variables are named by their layer names (Keras 3's ``variable.path``), never by position.

A layer inserted into a functional model used to shift every later layer's object path
(``model/_operations/N/...``): with the error's own advice (``on_missing: init``) every later layer
silently received the weights of the layer before it. Matches that can only rest on position (a TF2
checkpoint's list indices, names Keras made up by counting) are flagged, and derived layer state
(Normalization) follows copied variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import warmstart  # noqa: E402
from warmstart.tables import table_from_trackable  # noqa: E402

RNG = np.random.default_rng(7)


def encoder(inserted: bool = False) -> keras.Model:
    """Every layer 16 -> 16: a shifted match would fit every shape, so nothing but names can tell."""
    inputs = keras.Input((16,), name="x")
    h = keras.layers.Dense(16, name="enc1")(inputs)
    if inserted:
        h = keras.layers.Dense(16, name="adapter")(h)
    h = keras.layers.Dense(16, name="enc2")(h)
    outputs = keras.layers.Dense(16, name="head")(h)
    return keras.Model(inputs, outputs)


def randomize(model: keras.Model) -> None:
    for v in model.weights:
        v.assign(RNG.normal(size=v.shape).astype("float32"))


def layer_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def assert_each_layer_its_own(target: keras.Model, source: keras.Model, adapter_before: list[np.ndarray]) -> None:
    """The grown target holds the source's enc1, enc2 and head, and its adapter's initial value."""
    got, want = layer_weights(target), layer_weights(source)
    for name in ("enc1", "enc2", "head"):
        for g, w in zip(got[name], want[name]):
            np.testing.assert_array_equal(g, w)
    for g, w in zip(got["adapter"], adapter_before):
        np.testing.assert_array_equal(g, w)


def test_an_inserted_layer_shifts_nothing_in_copy_weights():
    source, target = encoder(), encoder(inserted=True)
    randomize(source)
    adapter_before = layer_weights(target)["adapter"]
    report = warmstart.copy_weights(source, target, rules={"on_missing": "init"})
    assert not report.plan.positional
    assert {e.target: e.action for e in report.plan.entries} == {
        "enc1/kernel": "copy", "enc1/bias": "copy", "enc2/kernel": "copy", "enc2/bias": "copy",
        "head/kernel": "copy", "head/bias": "copy", "adapter/kernel": "init", "adapter/bias": "init"}
    assert_each_layer_its_own(target, source, adapter_before)


def test_an_exclude_that_matches_only_another_name_of_a_variable_says_which(tmp_path):
    # '.*dense.*' written for a head named my_dense_head also matches the Dense layers' structure keys
    # (layers/dense/vars/0): an easy accident, so the plan row names the name it matched.
    encoder().save(tmp_path / "s.keras")
    encoder().save(tmp_path / "t.keras")
    plan = warmstart.plan(str(tmp_path / "s.keras"), str(tmp_path / "t.keras"),
                          {"exclude": ["enc1/.*", ".*dense.*"], "min_coverage": 0})
    reasons = {e.target: e.reason for e in plan.entries if e.action == "init"}
    assert reasons["enc1/kernel"] == "excluded by 'enc1/.*'"  # its own name: nothing more to say
    assert reasons["enc2/kernel"].startswith("excluded by '.*dense.*' (through its other name layers/dense")


def test_a_keras_file_target_is_named_by_its_layer_names(tmp_path):
    target = encoder(inserted=True)
    target.save(tmp_path / "target.keras")
    table = warmstart.signature_of(str(tmp_path / "target.keras"))
    assert set(table) == {f"{layer}/{w}" for layer in ("enc1", "adapter", "enc2", "head") for w in ("kernel", "bias")}
    assert not any(v.positional for v in table.variables)
    assert all(v.object_path.startswith("model/_operations/") for v in table.variables)


def checkpointed(source: keras.Model, prefix) -> tuple[keras.Model, str]:
    """``source`` with random weights, written by ``tf.train.Checkpoint(model=source)`` at ``prefix``."""
    randomize(source)
    tf.train.Checkpoint(model=source).write(str(prefix))
    return source, str(prefix)


@pytest.fixture
def tf2_checkpoint(tmp_path):
    return checkpointed(encoder(), tmp_path / "src" / "ckpt")


def sequential() -> keras.Model:
    """A Sequential model: a TF2 checkpoint records its variables' names with the model's own name first
    (``sequential_3/enc1/kernel``), a name Keras counted: they name nothing in another model."""
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, name="enc1"),
                             keras.layers.Dense(16, name="enc2"), keras.layers.Dense(16, name="head")])


@pytest.fixture
def sequential_checkpoint(tmp_path):
    return checkpointed(sequential(), tmp_path / "seq" / "ckpt")


def test_a_tf2_checkpoint_of_a_keras_model_matches_by_the_names_it_recorded(tf2_checkpoint):
    """TF records each Keras variable's path as its full name in the object graph: a functional model's
    checkpoint matches by layer names, and an inserted layer shifts nothing (it keeps its initial value)."""
    _, prefix = tf2_checkpoint
    same = warmstart.plan(prefix, encoder())
    assert same.ok and not same.positional
    assert {e.target: e.reason for e in same.entries}["enc2/kernel"] == "same full name (enc2/kernel)"
    grown = warmstart.plan(prefix, encoder(inserted=True), rules={"on_missing": "init"})
    assert grown.ok and not grown.positional
    assert {e.target: (e.action, e.source) for e in grown.entries} == {
        "enc1/kernel": ("copy", "model/_operations/1/_kernel"), "enc1/bias": ("copy", "model/_operations/1/bias"),
        "adapter/kernel": ("init", None), "adapter/bias": ("init", None),
        "enc2/kernel": ("copy", "model/_operations/2/_kernel"), "enc2/bias": ("copy", "model/_operations/2/bias"),
        "head/kernel": ("copy", "model/_operations/3/_kernel"), "head/bias": ("copy", "model/_operations/3/bias")}


def test_a_tf2_checkpoint_template_matches_by_the_names_it_recorded_not_by_its_list_indices(tf2_checkpoint,
                                                                                              tmp_path):
    """The stream's template, a TF2 checkpoint of the grown model, names its variables by object path through
    Keras' list of layers (model/_operations/2/... is the adapter there, enc2 in the source): each layer must
    find its own weights by the full names both checkpoints recorded, and a match by a list index is flagged."""
    source, prefix = tf2_checkpoint
    grown = encoder(inserted=True)
    randomize(grown)
    adapter_before = layer_weights(grown)["adapter"]
    tf.train.Checkpoint(model=grown).write(str(tmp_path / "tpl" / "ckpt"))
    report = warmstart.transfer(prefix, str(tmp_path / "tpl"), str(tmp_path / "out"), rules={"on_missing": "init"})
    assert report.strategy == "stream" and not report.plan.positional
    loaded = encoder(inserted=True)
    tf.train.Checkpoint(model=loaded).read(str(tmp_path / "out" / "model.ckpt")).assert_existing_objects_matched()
    assert_each_layer_its_own(loaded, source, adapter_before)
    _, seq_prefix = checkpointed(sequential(), tmp_path / "seq" / "ckpt")  # names Keras counted: only positions
    tf.train.Checkpoint(model=sequential()).write(str(tmp_path / "seq-tpl" / "ckpt"))
    same = warmstart.plan(seq_prefix, str(tmp_path / "seq-tpl"))
    assert same.ok and len(same.positional) == 6 and "by position" in same.entries[0].reason


def test_a_tf2_checkpoint_without_usable_names_matches_by_position_and_says_so(sequential_checkpoint):
    _, prefix = sequential_checkpoint
    same = warmstart.plan(prefix, sequential())
    assert same.ok and len(same.positional) == 6  # right here (same architecture), but only by position
    assert "6 matched by position" in same.summary()
    doc = same.to_json()
    assert doc["positional"] == 6 and all(v.get("positional") for v in doc["variables"])
    assert doc["variables"][0]["reason"].startswith("same object path")


def test_naming_the_source_structure_matches_a_tf2_checkpoint_by_layer_names(tf2_checkpoint, tmp_path):
    """The rule source_structure (the source model's .keras file): every match by layer name, the
    inserted layer keeps its initial value, and the assigned model holds each layer's own weights."""
    source, prefix = tf2_checkpoint
    source.save(tmp_path / "source.keras")
    rules = {"on_missing": "init", "source_structure": str(tmp_path / "source.keras")}
    target = encoder(inserted=True)
    adapter_before = layer_weights(target)["adapter"]
    report = warmstart.transfer(prefix, target, str(tmp_path / "out"), rules=rules, strategy="assign")
    plan = report.plan
    assert plan.ok and not plan.positional
    assert {e.target: e.source for e in plan.entries} == {
        "enc1/kernel": "enc1/kernel", "enc1/bias": "enc1/bias", "enc2/kernel": "enc2/kernel",
        "enc2/bias": "enc2/bias", "head/kernel": "head/kernel", "head/bias": "head/bias",
        "adapter/kernel": None, "adapter/bias": None}
    assert_each_layer_its_own(target, source, adapter_before)
    # a rule written against the checkpoint's object paths still finds its variable (an alias)
    renamed = warmstart.plan(prefix, encoder(inserted=True), rules={
        **rules, "rename": [["adapter/kernel", "model/_operations/2/_kernel"]]})
    assert next(e for e in renamed.entries if e.target == "adapter/kernel").source == "enc2/kernel"


def test_a_source_structure_that_does_not_describe_the_source_is_refused(tf2_checkpoint, tmp_path):
    _, prefix = tf2_checkpoint
    encoder(inserted=True).save(tmp_path / "other.keras")  # one layer more than the checkpoint has
    with pytest.raises(warmstart.UsageError, match="does not describe the source.*not in the source"):
        warmstart.plan(prefix, encoder(), rules={"source_structure": str(tmp_path / "other.keras")})
    x = keras.Input((16,))
    wide = keras.Model(x, keras.layers.Dense(8, name="head")(keras.layers.Dense(16, name="enc2")(
        keras.layers.Dense(16, name="enc1")(x))))
    wide.save(tmp_path / "wide.keras")  # the same layers, one of another shape
    with pytest.raises(warmstart.UsageError, match="shapes differ"):
        warmstart.plan(prefix, encoder(), rules={"source_structure": str(tmp_path / "wide.keras")})
    encoder().save_weights(tmp_path / "w.weights.h5")  # already named by layer names
    with pytest.raises(warmstart.UsageError, match="names the variables of a TF2 checkpoint"):
        warmstart.plan(str(tmp_path / "w.weights.h5"), encoder(), rules={"source_structure": str(tmp_path / "wide.keras")})


def test_the_cli_plan_warns_about_positional_matches(sequential_checkpoint, tmp_path):
    _, prefix = sequential_checkpoint
    sequential().save(tmp_path / "target.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", prefix, str(tmp_path / "target.keras")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "6 variable(s) matched by position, not by name" in " ".join(out.stdout.split())
    js = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", prefix, str(tmp_path / "target.keras"),
                         "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(js.stdout)["positional"] == 6


def test_layer_names_keras_made_up_by_counting_are_flagged():
    def unnamed() -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(4)])

    source, target = unnamed(), unnamed()  # dense_N counts every Dense created in this process
    table = table_from_trackable(target)
    assert all(v.positional for v in table.variables)
    report = warmstart.copy_weights(source, target, rules={"on_missing": "init"})
    assert all(e.positional for e in report.plan.transferred) or not report.plan.transferred


def normalized() -> tuple[keras.Model, keras.layers.Normalization]:
    inputs = keras.Input((3,))
    norm = keras.layers.Normalization(name="norm")
    return keras.Model(inputs, keras.layers.Dense(2, name="d")(norm(inputs))), norm


def test_copied_normalization_statistics_take_effect():
    source, norm = normalized()
    norm.adapt(RNG.normal(5.0, 3.0, (200, 3)).astype("float32"))
    target, _ = normalized()
    x = RNG.normal(size=(4, 3)).astype("float32")
    warmstart.copy_weights(source, target)
    np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), rtol=1e-6)


def test_a_live_target_filled_from_a_checkpoint_uses_its_new_statistics(tmp_path):
    source, norm = normalized()
    norm.adapt(RNG.normal(5.0, 3.0, (200, 3)).astype("float32"))
    prefix = str(tmp_path / "src" / "ckpt")
    tf.train.Checkpoint(model=source).write(prefix)
    target, _ = normalized()
    warmstart.transfer(prefix, target, str(tmp_path / "out"), strategy="assign")
    x = RNG.normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), rtol=1e-6)


def test_a_real_backbone_keeps_every_weight_under_a_new_head():
    def mobilenet(classes: int) -> keras.Model:
        return keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=classes)

    source, target = mobilenet(1000), mobilenet(10)
    randomize(source)
    report = warmstart.copy_weights(source, target, rules={"on_shape_mismatch": "skip"})
    skipped = {e.target for e in report.plan.entries if e.action == "skip"}
    assert skipped == {"predictions/kernel", "predictions/bias"} and not report.plan.positional
    want = {v.path: np.asarray(v) for v in source.weights}
    for v in target.weights:
        if v.path not in skipped:
            np.testing.assert_array_equal(np.asarray(v), want[v.path], err_msg=v.path)


def test_a_metagraph_as_source_is_named_for_what_it_is(tmp_path):
    (tmp_path / "model.ckpt.meta").write_bytes(b"\n\x04meta")
    with pytest.raises(warmstart.UnsupportedFormatError, match=re.escape(
            "is a TF1 MetaGraph (.meta), which holds the graph but no variable values, not a TensorFlow checkpoint")):
        warmstart.read_table(str(tmp_path / "model.ckpt.meta"))
    fs = __import__("fsspec").filesystem("memory")
    fs.pipe("/other-sources/model.ckpt.meta", b"\n\x04meta")
    with pytest.raises(warmstart.UnsupportedFormatError, match="MetaGraph"):
        warmstart.plan("memory://other-sources/model.ckpt.meta", encoder())


def test_the_cli_says_what_an_unreadable_source_is_with_exit_code_3(tmp_path):
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = np.zeros(3)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "inspect", str(tmp_path / "data.h5")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 3, out.stderr
    assert "an HDF5 file without Keras weights" in out.stderr
    assert "Traceback" not in out.stderr and "does not exist" not in out.stderr


def test_tables_and_plans_list_variables_in_model_order(tmp_path):
    inputs = keras.Input((2,))
    h = inputs
    for i in range(12):  # text order would be l0, l1, l10, l11, l2, ...
        h = keras.layers.Dense(2, name=f"l{i}")(h)
    model = keras.Model(inputs, h)
    layers = list(dict.fromkeys(name.split("/")[0] for name in table_from_trackable(model)))
    assert layers == [f"l{i}" for i in range(12)]
    prefix = str(tmp_path / "ckpt")
    tf.train.Checkpoint(model=model).write(prefix)
    indices = [int(name.split("/")[2]) for name in warmstart.read_table(prefix)]
    assert indices == sorted(indices) and indices[-1] == 12
    plan = warmstart.plan(prefix, model)
    assert list(dict.fromkeys(e.target.split("/")[0] for e in plan.entries)) == layers


def test_a_signature_keeps_layer_names_object_paths_and_the_positional_flag(sequential_checkpoint, tmp_path):
    _, prefix = sequential_checkpoint
    sequential().save(tmp_path / "target.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    sig = tmp_path / "target.json"
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "signature", str(tmp_path / "target.keras"),
                           "-o", str(sig)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(sig.read_text())
    assert {v["name"]: v["object_path"] for v in doc["variables"]}["enc1/kernel"] == \
        "model/_functional/_operations/1/_kernel"
    plan = warmstart.plan(prefix, str(sig))  # planned without TensorFlow building anything
    assert plan.ok and len(plan.positional) == 6
    # A stream output from it would hold no object graph, so tf.train.Checkpoint would restore nothing
    # from it (silently, unless asserted): refused before anything is written.
    out = tmp_path / "out"
    with pytest.raises(warmstart.UsageError, match="describes a keras target"):
        warmstart.transfer(prefix, str(sig), str(out))
    assert not out.exists()
