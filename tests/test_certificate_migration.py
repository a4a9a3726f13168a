"""The parity certificate where the models differ in kind: declared output pairs (``verify: pairs:``) run a TF1
graph's tensor (from the ``.meta`` TF1's Saver writes beside its checkpoint) against a Keras layer on the same
probes. The TF1 LSTM -> Keras migration certifies, and fails without the gate permutation; a square kernel that
needed a transpose is caught; a MetaGraph that would act outside itself is refused before it runs.
"""

from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
import yaml
from test_transforms_blocks import _keras_lstm, _lstm_rules, tf1_lstm  # noqa: F401 (a fixture)

import warmstart
from warmstart.cli import main

PAIR = {"source": "rnn/transpose_1:0", "target": "lstm"}  # dynamic_rnn's outputs ~ the Keras LSTM's


def _rules(**verify) -> dict:
    rules = _lstm_rules("lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias")
    return {**rules, "verify": {"pairs": [PAIR], **verify}}


def test_the_lstm_migration_certifies_end_to_end(tf1_lstm, tmp_path):  # noqa: F811
    _keras_lstm().save(tmp_path / "new.keras")
    report = warmstart.transfer(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                                rules=_rules(), verify=True)
    certificate = report.certificate
    (pair,) = certificate.checks
    assert certificate.passed and pair.kind == "pair" and pair.target == "lstm" and pair.source == PAIR["source"]
    assert 0 < pair.max_abs <= pair.atol and not pair.bit_equal and pair.compared == 4 * 5 * 16  # probes, steps, units
    (layer,) = certificate.not_checked  # the LSTM itself: its values are made by block ops, compared as the pair
    assert layer.reason.startswith("transformed (block ops on") and "declare an output pair" in layer.reason
    assert "model.ckpt.meta" in certificate.sides["source graph"]


def test_without_the_gate_permutation_the_certificate_fails_and_nothing_is_published(tf1_lstm, tmp_path,  # noqa: F811
                                                                                     capsys):
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _rules()
    for t in rules["transforms"]:
        t["ops"] = [op for op in t["ops"] if "permute" not in op]  # gates left in TF1's order i, j, f, o
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    code = main(["transfer", str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                 "--rules", str(tmp_path / "rules.yaml"), "--verify", "--no-prefect"])
    err = capsys.readouterr().err
    assert code == 5 and "first failure: pair 'lstm' <- 'rnn/transpose_1:0' differs" in err, err
    assert not (tmp_path / "out").exists()


def test_a_weights_template_is_certified_through_the_model_named_by_the_rules(tf1_lstm, tmp_path):  # noqa: F811
    """The stream into a .weights.h5 template: no TF for the copy; the certificate builds verify.target_model and
    loads the output into it with load_weights."""
    _keras_lstm().save_weights(tmp_path / "new.weights.h5")
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _lstm_rules(*(f"lstm/lstm_cell/vars/{i}" for i in range(3)))
    rules["verify"] = {"pairs": [PAIR], "target_model": str(tmp_path / "new.keras")}
    report = warmstart.transfer(str(tf1_lstm["dir"]), str(tmp_path / "new.weights.h5"), str(tmp_path / "out"),
                                rules=rules, verify=True)
    assert report.strategy == "stream" and report.certificate.passed
    assert "model.load_weights(model.weights.h5)" in report.certificate.sides["target"]


def _square_projection(tmp_path):
    """A TF1 graph storing its square kernel transposed (``y = x @ w^T + b``, as a [out, in] weight), saved by
    ``Saver`` with its MetaGraph; and the Keras model it migrates to (``Dense(6, name="proj")``)."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        w = tf.compat.v1.get_variable("proj/w", initializer=tf.constant(rng.normal(size=(6, 6)).astype("float32")))
        b = tf.compat.v1.get_variable("proj/b", initializer=tf.constant(rng.normal(size=6).astype("float32")))
        tf.identity(tf.matmul(x, w, transpose_b=True) + b, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "tf1" / "model.ckpt"))
    model_in = keras.Input((6,), name="x")
    keras.Model(model_in, keras.layers.Dense(6, name="proj")(model_in)).save(tmp_path / "new.keras")
    return str(tmp_path / "tf1"), str(tmp_path / "new.keras")


def test_a_square_kernel_that_needed_a_transpose_is_caught(tmp_path):
    """Names and shapes agree ([6, 6] both), so the plan copies; only the computation shows that TF1 stored the
    kernel transposed. With the transpose the certificate passes, on probes given in an npz file."""
    source, target = _square_projection(tmp_path)
    np.savez(tmp_path / "probes.npz", x=np.random.default_rng(9).normal(size=(16, 6)).astype("float32"))
    rules = {"rename": [["proj/kernel", "proj/w"], ["proj/bias", "proj/b"]],
             "verify": {"pairs": [{"source": "y:0", "target": "proj", "inputs": [{"array": "x"}]}],
                        "npz": str(tmp_path / "probes.npz")}}
    with pytest.raises(warmstart.CertificateError) as caught:
        warmstart.transfer(source, target, str(tmp_path / "out"), rules=rules, verify=True)
    (pair,) = caught.value.certificate.failures
    assert pair.target == "proj" and pair.source == "y:0" and pair.compared == 16 * 6
    assert not (tmp_path / "out").exists()
    fixed = copy.deepcopy(rules)
    fixed["rename"] = [["proj/bias", "proj/b"]]
    fixed["transforms"] = [{"target": "proj/kernel", "from": "proj/w", "ops": [{"transpose": {}}]}]
    report = warmstart.transfer(source, target, str(tmp_path / "out"), rules=fixed, verify=True)
    assert report.certificate.passed and report.certificate.checks[0].compared == 16 * 6


def test_a_graph_that_acts_outside_itself_is_refused_before_it_runs(tmp_path, capsys):
    """A MetaGraph is data: a tensor computed through a WriteFile op (here a control dependency) is refused, the
    file never written, exit 2."""
    import tensorflow as tf

    written = tmp_path / "written-by-the-graph"
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        w = tf.compat.v1.get_variable("proj/kernel", initializer=tf.ones((6, 6)))
        b = tf.compat.v1.get_variable("proj/bias", initializer=tf.zeros(6))
        with tf.control_dependencies([tf.io.write_file(str(written), "from the graph")]):
            tf.identity(tf.matmul(x, w) + b, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "tf1" / "model.ckpt"))
    model_in = keras.Input((6,), name="x")
    keras.Model(model_in, keras.layers.Dense(6, name="proj")(model_in)).save(tmp_path / "new.keras")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"verify": {"pairs": [{"source": "y:0", "target": "proj"}]}}))
    code = main(["transfer", str(tmp_path / "tf1"), str(tmp_path / "new.keras"), str(tmp_path / "out"), "--rules",
                 str(tmp_path / "rules.yaml"), "--verify", "--no-prefect", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and "runs WriteFile ops, which act outside the graph" in doc["error"]
    assert not written.exists() and not (tmp_path / "out").exists()


def test_a_pair_naming_a_tensor_the_graph_lacks_is_a_usage_error(tf1_lstm, tmp_path, capsys):  # noqa: F811
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _rules()
    rules["verify"]["pairs"] = [{"source": "rnn/transpose_2:0", "target": "lstm"}]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    code = main(["verify", str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "nowhere"),
                 "--rules", str(tmp_path / "rules.yaml")])
    assert code == 3 and "holds no model weights" in capsys.readouterr().err  # the output is checked first
    assert warmstart.transfer(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                              rules=_lstm_rules("lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel",
                                                "lstm/lstm_cell/bias")).ok
    code = main(["verify", str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                 "--rules", str(tmp_path / "rules.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "verify.pairs[0]: no tensor 'rnn/transpose_2:0' in the source's graph" in err, err
    assert "close: rnn/transpose_1:0" in err
