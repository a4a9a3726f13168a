"""Hints that point at the right variable, plans that copy nothing, and TensorFlow's own matching rules.

A closest-name hint prefers the same layer and the same variable role (a BatchNormalization's vars/0 is its
gamma, not its beta); a transform that matches no target variable names the target's look-alike names; a
transfer that copies nothing fails unless the rules allow it; TF's ``VocabInfo(new_vocab_size=...)`` and
``warm_start`` from a TF2 checkpoint of TF1 variables (matched by the full names the object graph records)
give what TF gives.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import builders  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras_models import randomized  # noqa: E402

import warmstart  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _bn_model(bn: str, dense: str, center: bool = True) -> keras.Model:
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name=dense)(inputs)
    return keras.Model(inputs, keras.layers.BatchNormalization(name=bn, center=center)(h))


def test_a_closest_name_hint_prefers_the_same_role(tmp_path):
    """A bare weights template's vars/N against renamed layers: the hint names the variable of the same role."""
    _bn_model("block1a_bn", "block1a_dense").save(tmp_path / "source.keras")
    _bn_model("block1a_bn2", "block1a_dense2").save_weights(tmp_path / "target.weights.h5")
    plan = warmstart.plan(str(tmp_path / "source.keras"), str(tmp_path / "target.weights.h5"))
    reasons = {e.target: e.reason for e in plan.entries}
    assert "closest source name: 'block1a_bn/gamma'" in reasons["block1a_bn2/vars/0"]
    assert "closest source name: 'block1a_bn/beta'" in reasons["block1a_bn2/vars/1"]
    assert "closest source name: 'block1a_dense/kernel'" in reasons["block1a_dense2/vars/0"]
    assert "closest source name: 'block1a_dense/bias'" in reasons["block1a_dense2/vars/1"]


def test_a_transform_matching_no_target_variable_names_the_look_alikes(tmp_path):
    """A BatchNormalization without beta has three variables: which is which, a bare weights file cannot say,
    so 'bn/gamma' names nothing there; the error shows the names the target has."""
    _bn_model("bn", "dense_in", center=False).save_weights(tmp_path / "target.weights.h5")
    _bn_model("bn", "dense_in", center=False).save(tmp_path / "source.keras")
    plan = warmstart.plan(str(tmp_path / "source.keras"), str(tmp_path / "target.weights.h5"),
                          rules={"transforms": [{"target": "bn/gamma", "overlap": True}]})
    assert not plan.ok
    error = next(p for p in plan.problems() if p.startswith("transforms[0]"))
    assert "matches no target variable; closest target names: 'bn/vars/0'" in error


def test_a_transfer_that_copies_nothing_fails_unless_the_rules_allow_it(tmp_path):
    """on_missing: init with nothing in common used to end in 'ok: ... 0 variables copied' and exit 0."""
    builders.tf1_checkpoint(tmp_path / "src", {"a": np.ones(2, np.float32)})
    builders.tf1_checkpoint(tmp_path / "tpl", {"b": np.zeros(2, np.float32)})
    (tmp_path / "rules.yaml").write_text("on_missing: init\n")
    args = [sys.executable, "-m", "warmstart.cli", "transfer", str(tmp_path / "src"), str(tmp_path / "tpl")]
    done = subprocess.run(args + [str(tmp_path / "out"), "--rules", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 1 and "no variable would be copied" in done.stderr and "min_coverage: 0" in done.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "rules.yaml").write_text("on_missing: init\nmin_coverage: 0\n")
    done = subprocess.run(args + [str(tmp_path / "allowed"), "--rules", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0 and "0 variables copied" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_a_tf2_checkpoint_into_a_weights_template_by_its_source_structure(tmp_path):
    """A TF2 checkpoint of EfficientNetB0 into the new model's .weights.h5 template, named by the source's
    .keras file: every variable matched by layer names (block1a_bn/gamma is block1a_bn/vars/0)."""
    import tensorflow as tf

    def model():
        return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=5)

    source = randomized(model())
    tf.train.Checkpoint(model=source).write(str(tmp_path / "ckpt" / "ckpt"))
    source.save(tmp_path / "source.keras")
    model().save_weights(tmp_path / "target.weights.h5")
    report = warmstart.transfer(str(tmp_path / "ckpt" / "ckpt"), str(tmp_path / "target.weights.h5"),
                                str(tmp_path / "out"), rules={"source_structure": str(tmp_path / "source.keras")})
    entries = {e.target: e for e in report.plan.entries}
    assert report.plan.ok and report.plan.counts["copy"] == len(source.weights)
    assert entries["block1a_bn/vars/0"].source == "block1a_bn/gamma"
    # only the layers EfficientNet leaves unnamed (its Normalization) rest on position
    assert {e.target.split("/")[0].rstrip("_0123456789") for e in report.plan.positional} == {"normalization"}
    warm = model()
    warm.load_weights(tmp_path / "out" / "model.weights.h5")
    for got, want in zip(warm.weights, source.weights):
        assert np.array_equal(np.asarray(got), np.asarray(want)), want.path


def _tf_warm_start(checkpoint: str, variables: dict[str, np.ndarray], vocab_info=None) -> dict[str, np.ndarray]:
    """What TF1's ``tf.compat.v1.train.warm_start`` puts into variables of these names and initial values."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        made = {n: tf.compat.v1.get_variable(n, initializer=tf.constant(v)) for n, v in variables.items()}
        tf.compat.v1.train.warm_start(checkpoint, vars_to_warm_start=".*", var_name_to_vocab_info=vocab_info or {})
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return session.run(made)


def test_a_tf2_checkpoint_of_tf1_variables_matches_by_their_full_names(tmp_path):
    """tf.train.Checkpoint(v=var).save(): the object graph records each variable's own name, which warm_start
    matches a TF1 graph's variables by; warmstart matches them the same way (its object path stays an alias)."""
    import tensorflow as tf

    kernel = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="dense/kernel")
    bias = tf.Variable(np.full(3, 0.5, np.float32), name="dense/bias")
    prefix = tf.train.Checkpoint(v=kernel, extra=[bias]).save(str(tmp_path / "tf2" / "ckpt"))
    initial = {"dense/kernel": np.zeros((2, 3), np.float32), "dense/bias": np.zeros(3, np.float32)}
    builders.tf1_checkpoint(tmp_path / "tpl", initial)
    report = warmstart.transfer(prefix, str(tmp_path / "tpl"), str(tmp_path / "out"))
    assert {e.target: e.reason for e in report.plan.entries} == {
        "dense/kernel": "same full name (dense/kernel)", "dense/bias": "same full name (dense/bias)"}
    assert not report.plan.positional
    got = builders.load_values(tmp_path / "out" / "model.ckpt")
    want = _tf_warm_start(prefix, initial)
    for name in initial:
        assert np.array_equal(got[name], want[name]), name


@pytest.mark.parametrize("strategy", ["stream", "restore", "assign"])
def test_vocab_info_new_vocab_size_uses_the_first_tokens_of_the_new_vocabulary(tmp_path, strategy):
    """VocabInfo(new_vocab_size=3, num_oov_buckets=1): only the new file's first 3 tokens are the vocabulary."""
    import tensorflow as tf

    old_tokens, new_tokens = ["apple", "banana", "guava", "orange"], ["orange", "guava", "banana", "apple", "kiwi"]
    (tmp_path / "old.txt").write_text("\n".join(old_tokens) + "\n")
    (tmp_path / "new.txt").write_text("\n".join(new_tokens) + "\n")
    previous = np.array([[0.5], [1.0], [1.5], [2.0]], np.float32)
    builders.tf1_checkpoint(tmp_path / "src", {"fruit_weights": previous})
    initial = {"fruit_weights": np.full((4, 1), 7.0, np.float32)}
    builders.tf1_checkpoint(tmp_path / "tpl", initial)
    rules = {"transforms": [{"target": "fruit_weights", "vocab": {
        "old": str(tmp_path / "old.txt"), "new": str(tmp_path / "new.txt"), "new_vocab_size": 3, "num_oov_buckets": 1,
        "old_vocab_size": 4, "new_row": "zeros"}}]}
    report = warmstart.transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), str(tmp_path / "out"), rules=rules,
                                strategy=strategy)
    assert report.ok and "3 of 4 rows from the source" in report.plan.entries[0].reason
    got = builders.load_values(tmp_path / "out" / "model.ckpt")["fruit_weights"]
    info = tf.compat.v1.train.VocabInfo(new_vocab=str(tmp_path / "new.txt"), new_vocab_size=3, num_oov_buckets=1,
                                        old_vocab=str(tmp_path / "old.txt"), old_vocab_size=4)  # backup: zeros
    want = _tf_warm_start(str(tmp_path / "src" / "model.ckpt"), initial, {"fruit_weights": info})["fruit_weights"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [[2.0], [1.5], [1.0], [0.0]])
    too_many = {"transforms": [{"target": "fruit_weights", "vocab": {
        "old": str(tmp_path / "old.txt"), "new": str(tmp_path / "new.txt"), "new_vocab_size": 9}}]}
    plan = warmstart.plan(str(tmp_path / "src"), str(tmp_path / "tpl"), too_many)
    assert "new_vocab_size 9 is larger than the new vocabulary" in plan.entries[0].reason
