"""Block transforms (issue 11): slice, split, permute, transpose, reshape, add, concat, declared in the rules and
checked at plan time; the TF1 LSTM -> Keras 3 LSTM migration gives the same outputs.

The TF1 model: ``tf.compat.v1.nn.rnn_cell.LSTMCell`` needs Keras 2 (``tf_keras``), which TF 2.21 with Keras 3
does not ship (``AttributeError: LSTMCell is not available with Keras 3``). The graph below is the same cell
run by TF's own kernel: ``tf.raw_ops.LSTMBlockCell`` (contrib's ``LSTMBlockCell``, whose weights are
``LSTMCell``'s: a fused ``rnn/lstm_cell/kernel [input+units, 4*units]`` and ``bias [4*units]``, gates
``i, j(=c), f, o``, ``forget_bias`` added to ``f`` at run time) under ``tf.compat.v1.nn.dynamic_rnn``, saved
with ``tf.compat.v1.train.Saver``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import builders
import fsspec
import numpy as np
import pytest
import yaml
from servers import clear_fs_caches, upload_dir

import warmstart
from warmstart.cli import main

IN, UNITS, STEPS, BATCH = 8, 16, 5, 3
REORDER = [0, 2, 1, 3]  # TF1 i, j, f, o -> Keras i, f, c(=j), o


def _lstm_rules(kernel: str, recurrent: str, bias: str) -> dict:
    """The migration, one transforms entry per Keras variable (names as the target knows them)."""
    permute = {"permute": {"axis": 1, "blocks": 4, "order": REORDER}}
    return {"transforms": [
        {"target": kernel, "from": "rnn/lstm_cell/kernel", "ops": [{"slice": {"axis": 0, "stop": IN}}, permute]},
        {"target": recurrent, "from": "rnn/lstm_cell/kernel", "ops": [{"slice": {"axis": 0, "start": IN}}, permute]},
        {"target": bias, "from": "rnn/lstm_cell/bias",
         "ops": [{"permute": {"axis": 0, "blocks": 4, "order": REORDER}},
                 {"add": {"value": 1.0, "axis": 0, "blocks": 4, "block": 1}}]},  # TF1's forget_bias, on Keras' f
    ]}


class _BlockLSTMCell:
    """The smallest RNN cell ``dynamic_rnn`` runs: one ``LSTMBlockCell`` step over LSTMCell's variables."""

    def __init__(self, kernel, bias):
        self.kernel, self.bias = kernel, bias
        self.state_size, self.output_size = (UNITS, UNITS), UNITS

    def zero_state(self, batch, dtype):
        import tensorflow as tf

        return (tf.zeros([batch, UNITS], dtype), tf.zeros([batch, UNITS], dtype))

    def __call__(self, x, state):
        import tensorflow as tf

        c, h = state
        zeros = tf.zeros([UNITS])
        _, cs, _, _, _, _, h_new = tf.raw_ops.LSTMBlockCell(
            x=x, cs_prev=c, h_prev=h, w=self.kernel, wci=zeros, wcf=zeros, wco=zeros, b=self.bias,
            forget_bias=1.0, cell_clip=-1.0, use_peephole=False)
        return h_new, (cs, h_new)


@pytest.fixture(scope="module")
def tf1_lstm(tmp_path_factory):
    """A TF1 LSTM checkpoint with random weights, a random input and the TF1 graph's output on it."""
    import tensorflow as tf

    d = tmp_path_factory.mktemp("tf1-lstm")
    rng = np.random.default_rng(7)
    kernel = rng.standard_normal((IN + UNITS, 4 * UNITS)).astype(np.float32) * 0.3
    bias = rng.standard_normal(4 * UNITS).astype(np.float32) * 0.3
    x = rng.standard_normal((BATCH, STEPS, IN)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, [None, STEPS, IN])
        with tf.compat.v1.variable_scope("rnn/lstm_cell"):
            k = tf.compat.v1.get_variable("kernel", initializer=tf.constant(kernel))
            b = tf.compat.v1.get_variable("bias", initializer=tf.constant(bias))
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(_BlockLSTMCell(k, b), inputs, dtype=tf.float32)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            expected = session.run(outputs, {inputs: x})
            saver.save(session, str(d / "model.ckpt"))
    assert sorted(builders.load_values(d / "model.ckpt")) == ["rnn/lstm_cell/bias", "rnn/lstm_cell/kernel"]
    return {"dir": d, "x": x, "expected": expected, "kernel": kernel, "bias": bias}


def _keras_lstm():
    import keras

    return keras.Sequential([keras.Input((STEPS, IN)), keras.layers.LSTM(UNITS, return_sequences=True, name="lstm")])


def _keras_output(weights_file, x) -> np.ndarray:
    model = _keras_lstm()
    model.load_weights(weights_file)  # the way users load a warm start
    return np.asarray(model(x))


def _rules_file(path, rules: dict) -> str:
    path.write_text(yaml.safe_dump(rules))
    return str(path)


def test_lstm_into_keras_weights_file_by_stream(tf1_lstm, tmp_path):
    _keras_lstm().save_weights(tmp_path / "new.weights.h5")  # the new model, freshly initialized
    rules = _rules_file(tmp_path / "rules.yaml", _lstm_rules(*(f"lstm/lstm_cell/vars/{i}" for i in range(3))))
    report = warmstart.transfer(str(tf1_lstm["dir"]), str(tmp_path / "new.weights.h5"), str(tmp_path / "out"),
                                rules=rules)
    assert report.ok and report.strategy == "stream" and report.plan.counts["remap"] == 3
    got = _keras_output(tmp_path / "out" / "model.weights.h5", tf1_lstm["x"])
    np.testing.assert_allclose(got, tf1_lstm["expected"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("strategy", ["assign", "restore"])
def test_lstm_into_keras_model_by_tf(tf1_lstm, tmp_path, strategy):
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _lstm_rules("lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias")
    report = warmstart.transfer(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                                rules=rules, strategy=strategy)
    assert report.ok
    got = _keras_output(tmp_path / "out" / "model.weights.h5", tf1_lstm["x"])
    np.testing.assert_allclose(got, tf1_lstm["expected"], atol=1e-5, rtol=0)
    # the TF2 checkpoint beside it holds the same values
    import tensorflow as tf

    model = _keras_lstm()
    tf.train.Checkpoint(model=model).restore(str(tmp_path / "out" / "model.ckpt")).expect_partial()
    np.testing.assert_allclose(np.asarray(model(tf1_lstm["x"])), tf1_lstm["expected"], atol=1e-5, rtol=0)


def _documented_lstm_recipe() -> tuple[str, list[str]]:
    """The documentation's TF1 LSTM -> Keras recipe (docs/guide/transforms.md) as written: its rules.yaml and its
    transfer commands."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "transforms.md").read_text()
    start = page.index("# rules.yaml: TF1 rnn/lstm_cell")
    rules = page[start:page.index("```", start)]
    commands = [line.split("#")[0].split() for line in page[page.index("```console", start):].splitlines()
                if line.startswith("warmstart transfer runs/tf1-lstm/")]
    return rules, [" ".join(c) for c in commands]


@pytest.mark.parametrize("target_kind", ["weights.h5", "keras"])
def test_the_documented_lstm_recipe_runs_as_written(tf1_lstm, tmp_path, target_kind, capsys, monkeypatch):
    """Every target kind the documentation's recipe shows, its rules and command verbatim: the Keras model gives the
    TF1 graph's outputs, no entry is flagged positional (each is named by its transform's from:), and the
    certificate (--verify) passes; with the gates left in TF1's order it fails and nothing is published."""
    rules, commands = _documented_lstm_recipe()
    assert len(commands) == 2, commands
    command = next(c for c in commands if f" new.{target_kind} " in c)
    shutil.copytree(tf1_lstm["dir"], tmp_path / "runs" / "tf1-lstm")
    (tmp_path / "rules.yaml").write_text(rules)
    new = _keras_lstm()
    new.save(tmp_path / "new.keras")  # the recipe's verify: target_model, and one of its targets
    new.save_weights(tmp_path / "new.weights.h5")
    monkeypatch.chdir(tmp_path)
    assert "--verify" in command.split()
    assert main(command.split()[1:] + ["--no-prefect"]) == 0
    err = capsys.readouterr().err
    assert "matched by position" not in err, err
    got = _keras_output(tmp_path / "warm" / "model.weights.h5", tf1_lstm["x"])
    np.testing.assert_allclose(got, tf1_lstm["expected"], atol=1e-5, rtol=0)
    certificate = json.loads((tmp_path / "warm" / "warmstart.json").read_text())["verify"]
    assert certificate["verdict"] == "passed" and certificate["counts"]["pair"] == 1  # the recipe is certified
    unpermuted = rules.replace("order: [0, 2, 1, 3]", "order: [0, 1, 2, 3]")  # gates left in TF1's order
    assert unpermuted.count("order: [0, 1, 2, 3]") == 3
    (tmp_path / "rules.yaml").write_text(unpermuted)
    assert main(command.replace("warm/", "warm-unpermuted/").split()[1:] + ["--no-prefect"]) == 5
    assert "pair 'lstm' <- 'rnn/transpose_1:0' differs" in capsys.readouterr().err
    assert not (tmp_path / "warm-unpermuted").exists()


def test_lstm_plan_rows_say_what_is_done(tf1_lstm, tmp_path):
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _rules_file(tmp_path / "rules.yaml", _lstm_rules(
        "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias"))
    plan = warmstart.plan(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), rules)
    assert plan.ok and plan.unused_source == () and plan.coverage == 1.0
    rows = {e.target: e for e in plan.entries}
    kernel = rows["lstm/lstm_cell/kernel"]
    assert kernel.action == "remap" and kernel.source == "rnn/lstm_cell/kernel"
    assert kernel.reason.startswith("rows 0:8 of rnn/lstm_cell/kernel [24, 64], 4 blocks along axis 1 reordered "
                                    "0,2,1,3 -> [8, 64] (transforms[0])")
    # one fused kernel split in two: not an accidental shared source, and the row says so
    assert "'lstm/lstm_cell/recurrent_kernel' takes another, disjoint slice of 'rnn/lstm_cell/kernel'" in kernel.reason
    assert "rows 8:24 of rnn/lstm_cell/kernel" in rows["lstm/lstm_cell/recurrent_kernel"].reason
    assert "+1 on block 1 of 4 along axis 0" in rows["lstm/lstm_cell/bias"].reason
    assert main(["plan", str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), "--rules", rules, "--json"]) == 0


def test_plan_json_carries_the_ops(tf1_lstm, tmp_path, capsys):
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _rules_file(tmp_path / "rules.yaml", _lstm_rules(
        "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias"))
    assert main(["plan", str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), "--rules", rules, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = next(v for v in doc["variables"] if v["target"] == "lstm/lstm_cell/recurrent_kernel")
    assert row["action"] == "remap" and row["remap"]["kind"] == "blocks"
    assert row["remap"]["ops"][0] == {"slice": {"axis": 0, "start": IN}}
    assert row["remap"]["sources"] == [{"name": "rnn/lstm_cell/kernel", "key": "rnn/lstm_cell/kernel",
                                        "shape": [IN + UNITS, 4 * UNITS], "dtype": "float32"}]
    assert doc["rules"]["transforms"][0]["from"] == "rnn/lstm_cell/kernel"  # the manifest's rules load again
    warmstart.planning.load_rules(doc["rules"])


def test_overlapping_slices_of_one_source_are_a_shared_source(tf1_lstm, tmp_path):
    _keras_lstm().save(tmp_path / "new.keras")
    rules = _lstm_rules("lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias")
    rules["transforms"][1]["ops"][0] = {"slice": {"axis": 0, "start": IN - 1, "stop": IN + UNITS - 1}}
    plan = warmstart.plan(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"), rules)
    assert not plan.ok and "also fills 'lstm/lstm_cell/recurrent_kernel'" in plan.problems()[0]
    assert warmstart.plan(str(tf1_lstm["dir"]), str(tmp_path / "new.keras"),
                          {**rules, "allow_shared_source": True}).ok


# --- each op, concat, and their errors, on small TF1 checkpoints --------------------------------------------

A = np.arange(24, dtype=np.float32).reshape(4, 6)
B = np.arange(100, 112, dtype=np.float32).reshape(2, 6)


def _pair(tmp_path, target: dict, source: dict | None = None):
    builders.tf1_checkpoint(tmp_path / "src", source or {"a/kernel": A, "b/kernel": B})
    builders.tf1_checkpoint(tmp_path / "tpl", target)
    return str(tmp_path / "src"), str(tmp_path / "tpl")


def _transfer(src, tpl, out, rules, strategy):
    report = warmstart.transfer(src, tpl, str(out), rules=rules, strategy=strategy)
    assert report.ok
    return builders.load_values(out / "model.ckpt"), report


@pytest.mark.parametrize("strategy", ["stream", "restore", "assign"])
def test_concat_transpose_reshape_split(tmp_path, strategy):
    src, tpl = _pair(tmp_path, {"joint/kernel": np.zeros((6, 6), np.float32), "t": np.zeros((6, 4), np.float32),
                                "r": np.zeros((3, 8), np.float32), "s": np.zeros((4, 2), np.float32)})
    rules = {"transforms": [
        {"target": "joint/kernel", "concat": {"axis": 0, "sources": ["a/kernel", "b/kernel"]}},
        {"target": "t", "from": "a/kernel", "ops": [{"transpose": {}}]},
        {"target": "r", "from": "a/kernel", "ops": [{"reshape": {"shape": [3, -1]}}]},
        {"target": "s", "from": "a/kernel", "ops": [{"split": {"axis": 1, "parts": 3, "index": 2}}]},
    ], "allow_shared_source": True}
    got, report = _transfer(src, tpl, tmp_path / "out", rules, strategy)
    np.testing.assert_array_equal(got["joint/kernel"], np.concatenate([A, B]))
    np.testing.assert_array_equal(got["t"], A.T)
    np.testing.assert_array_equal(got["r"], A.reshape(3, 8))
    np.testing.assert_array_equal(got["s"], A[:, 4:6])
    assert report.plan.unused_source == ()
    joint = report.plan.entries[[e.target for e in report.plan.entries].index("joint/kernel")]
    assert joint.reason.startswith("concatenation along axis 0 of a/kernel [4, 6], b/kernel [2, 6] -> [6, 6]")


def test_concat_sources_count_as_used_and_composes_with_a_cast(tmp_path):
    src, tpl = _pair(tmp_path, {"joint": np.zeros((6, 6), np.float32)},
                     {"a/kernel": A.astype(np.float16), "b/kernel": B.astype(np.float16)})
    rules = {"transforms": [{"target": "joint", "concat": {"axis": 0, "sources": ["a/kernel", "b/kernel"]}}]}
    plan = warmstart.plan(src, tpl, rules)
    assert not plan.ok and "dtype float16 in the source" in plan.problems()[0]
    got, report = _transfer(src, tpl, tmp_path / "out", {**rules, "on_dtype_mismatch": "cast"}, "stream")
    assert report.plan.unused_source == () and "cast float16 -> float32" in report.plan.entries[0].reason
    assert got["joint"].dtype == np.float32
    np.testing.assert_array_equal(got["joint"], np.concatenate([A, B]))


@pytest.mark.parametrize("strategy", ["stream", "restore", "assign"])
def test_partitioned_source_through_block_ops(tmp_path, strategy):
    parts = builders.partitioned_checkpoint(tmp_path / "src")  # emb [10, 4] in 3 slices on axis 0
    emb = parts["values"]["emb"]
    builders.tf1_checkpoint(tmp_path / "tpl", {"emb_t": np.zeros((4, 6), np.float32),
                                               "dense/kernel": np.zeros((4, 2), np.float32)})
    rules = {"transforms": [{"target": "emb_t", "from": "emb",
                             "ops": [{"slice": {"axis": 0, "start": 2, "stop": 8}}, {"transpose": {}}]}]}
    got, report = _transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), tmp_path / "out", rules, strategy)
    np.testing.assert_array_equal(got["emb_t"], emb[2:8].T)
    assert report.plan.entries[[e.target for e in report.plan.entries].index("emb_t")].action == "remap"


def test_a_source_on_s3(tmp_path, s3_server, s3_bucket, monkeypatch):
    _, tpl = _pair(tmp_path, {"joint": np.zeros((6, 6), np.float32), "p": np.zeros((6, 4), np.float32)})
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, tmp_path / "src", f"{s3_bucket}/src")
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    clear_fs_caches()
    rules = {"transforms": [
        {"target": "joint", "concat": {"axis": 0, "sources": ["a/kernel", "b/kernel"]}},
        {"target": "p", "from": "a/kernel", "ops": [{"permute": {"axis": 1, "blocks": 3, "order": [2, 0, 1]}},
                                                     {"transpose": {"perm": [1, 0]}}]},
    ], "allow_shared_source": True}
    for strategy in ("stream", "assign"):
        got, report = _transfer(f"{s3_bucket}/src", tpl, tmp_path / strategy, rules, strategy)
        np.testing.assert_array_equal(got["joint"], np.concatenate([A, B]))
        np.testing.assert_array_equal(got["p"], np.concatenate([A[:, 4:], A[:, :4]], axis=1).T)
    assert report.bytes_read >= A.nbytes + B.nbytes


def test_live_tf1_sessions_concat(tmp_path):
    import tensorflow as tf

    sessions = []
    for values in ({"a": A, "b": B}, {"joint": np.zeros((6, 6), np.float32)}):
        graph = tf.Graph()
        with graph.as_default():
            variables = [tf.compat.v1.get_variable(n, initializer=tf.constant(v)) for n, v in values.items()]
            session = tf.compat.v1.Session(graph=graph)
            session.run([v.initializer for v in variables])
        sessions.append((session, variables))
    report = warmstart.copy_variables(sessions[0][0], sessions[1][0], {"transforms": [
        {"target": "joint", "concat": {"axis": 0, "sources": ["a", "b"]}}]})
    assert report.plan.unused_source == ()
    np.testing.assert_array_equal(sessions[1][0].run(sessions[1][1][0]), np.concatenate([A, B]))
    for session, _ in sessions:
        session.close()


def test_live_keras_plan_errors_touch_nothing():
    import keras

    src = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="a"), keras.layers.Dense(6, name="b")])
    dst = keras.Sequential([keras.Input((4,)), keras.layers.Dense(12, name="ab")])
    before = np.asarray(dst.get_layer("ab").kernel).copy()
    joined = {"transforms": [{"target": "ab/kernel", "concat": {"axis": 1, "sources": ["a/kernel", "b/kernel"]}}],
              "exclude": ["ab/bias"]}  # a [4, 6] and b [6, 6]
    with pytest.raises(warmstart.PlanError, match=r"the sources' shapes \[\[4, 6\], \[6, 6\]\] differ off axis 1"):
        warmstart.copy_weights(src, dst, joined)
    wrong = {"transforms": [{"target": "ab/kernel", "from": "a/kernel", "ops": [{"transpose": {}}]}],
             "exclude": ["ab/bias"]}
    with pytest.raises(warmstart.PlanError, match=r"transforms\[0\]: the ops make \[6, 4\] float32 from a/kernel"):
        warmstart.copy_weights(src, dst, wrong)
    np.testing.assert_array_equal(np.asarray(dst.get_layer("ab").kernel), before)


def test_live_keras_models(tmp_path):
    import keras

    src = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="a"), keras.layers.Dense(6, name="b")])
    dst = keras.Sequential([keras.Input((4,)), keras.layers.Dense(12, name="ab")])
    a, b = np.asarray(src.get_layer("a").bias), np.asarray(src.get_layer("b").bias)
    rules = {"transforms": [{"target": "ab/bias", "concat": {"axis": 0, "sources": ["a/bias", "b/bias"]},
                             "ops": [{"add": {"value": 0.5}}]}], "exclude": ["ab/kernel"]}
    report = warmstart.copy_weights(src, dst, rules)
    assert report.plan.counts["remap"] == 1
    np.testing.assert_allclose(np.asarray(dst.get_layer("ab").bias), np.concatenate([a, b]) + 0.5)


def _cli_plan(src, tpl, rules, tmp_path, capsys, command="plan"):
    path = _rules_file(tmp_path / "rules.yaml", rules)
    args = [command, src, tpl] + ([str(tmp_path / "out")] if command == "transfer" else []) + ["--rules", path]
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("transform, message", [
    ({"from": "a/kernel", "ops": [{"slice": {"axis": 0, "start": 2, "stop": 9}}]},
     "transforms[0]: ops[0] slice: 2:9 is out of range for axis 0 of size 4"),
    ({"from": "a/kernel", "ops": [{"slice": {"axis": 2, "stop": 1}}]}, "ops[0] slice: axis 2 of a rank-2 value"),
    ({"from": "a/kernel", "ops": [{"permute": {"axis": 1, "blocks": 4, "order": [0, 1, 2, 3]}}]},
     "transforms[0]: ops[0] permute: axis 1 of size 6 is not divisible into 4 blocks"),
    ({"from": "a/kernel", "ops": [{"permute": {"axis": 1, "blocks": 3, "order": [0, 0, 1]}}]},
     "ops[0] permute: order [0, 0, 1] is not a permutation of 0..2"),
    ({"from": "a/kernel", "ops": [{"reshape": {"shape": [5, 5]}}]},
     "ops[0] reshape: [5, 5] holds 25 elements, the value 24"),
    ({"from": "a/kernel", "ops": [{"transpose": {"perm": [0]}}]}, "ops[0] transpose: perm [0] is not a permutation"),
    ({"from": "a/kernel", "ops": [{"split": {"axis": 1, "parts": 4, "index": 0}}]},
     "ops[0] split: axis 1 of size 6 does not split into 4 equal parts"),
    ({"from": "a/kernel", "ops": [{"add": {"value": 1.0, "axis": 1, "blocks": 3, "block": 3}}]},
     "ops[0] add: block 3 of 3 blocks"),
    ({"concat": {"axis": 0, "sources": ["a/kernel", "c/kernel"]}},
     "transforms[0]: concat source 'c/kernel' is not in the source"),
    ({"concat": {"axis": 0, "sources": ["x/kernel", "b/kernel"]}}, "transforms[0]: 'x/kernel' is not in the source"),
    ({"from": "a/kernel", "ops": [{"transpose": {}}]},
     "transforms[0]: the ops make [6, 4] float32 from a/kernel [4, 6]; the target t is [4, 6] float32"),
])
def test_plan_errors_name_the_transform(tmp_path, capsys, transform, message):
    src, tpl = _pair(tmp_path, {"t": np.zeros((4, 6), np.float32)})
    rules = {"transforms": [{"target": "t", **transform}], "on_missing": "init"}
    code, err = _cli_plan(src, tpl, rules, tmp_path, capsys)
    assert code == 1 and message in err and "'t'" in err
    code, err = _cli_plan(src, tpl, rules, tmp_path, capsys, "transfer")
    assert code == 1 and message in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("transform, message", [
    ({"ops": [{"slice": {"axis": 0}, "transpose": {}}]}, "an op is one of"),
    ({"ops": [{"flip": {}}]}, "flip"),
    ({"overlap": True, "ops": [{"transpose": {}}]}, "exactly one of"),
    ({"from": "a", "concat": {"axis": 0, "sources": ["a", "b"]}}, "concat names its sources"),
    ({"from": "\\2", "ops": [{"transpose": {}}]}, "refers to group 2"),
    ({"concat": {"axis": 0, "sources": ["a"]}}, "at least 2"),
])
def test_malformed_block_rules_are_usage_errors(tmp_path, capsys, transform, message):
    src, tpl = _pair(tmp_path, {"t": np.zeros((4, 6), np.float32)})
    code, err = _cli_plan(src, tpl, {"transforms": [{"target": "t", **transform}]}, tmp_path, capsys)
    assert code == 2 and message in err


def test_two_transforms_on_one_target_and_back_references(tmp_path):
    src, tpl = _pair(tmp_path, {"x/kernel": np.zeros((6, 4), np.float32)})
    twice = {"transforms": [{"target": "x/.*", "from": "a/kernel", "ops": [{"transpose": {}}]},
                            {"target": ".*/kernel", "from": "a/kernel", "ops": [{"transpose": {}}]}]}
    assert "both match it (ambiguous)" in warmstart.plan(src, tpl, twice).problems()[0]
    by_group = {"transforms": [{"target": "x/(kernel)", "from": "a/\\1", "ops": [{"transpose": {}}]}]}
    plan = warmstart.plan(src, tpl, by_group)
    assert plan.ok and plan.entries[0].source == "a/kernel"


def test_add_refuses_what_it_cannot_do_exactly(tmp_path):
    src, tpl = _pair(tmp_path, {"n": np.zeros(4, np.int32)}, {"n": np.arange(4, dtype=np.int32)})
    half = {"transforms": [{"target": "n", "ops": [{"add": {"value": 0.5}}]}]}
    assert "ops[0] add: 0.5 added to int32 values would be truncated" in warmstart.plan(src, tpl, half).problems()[0]
    got, _ = _transfer(src, tpl, tmp_path / "out", {"transforms": [{"target": "n", "ops": [{"add": {"value": 2}}]}]},
                       "stream")
    np.testing.assert_array_equal(got["n"], np.arange(4) + 2)


def test_keras_weights_file_source_into_keras_weights_file(tmp_path):
    import keras

    src = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="a"), keras.layers.Dense(6, name="b")])
    dst = keras.Sequential([keras.Input((4,)), keras.layers.Dense(12, name="ab")])
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        src.get_layer(name).bias.assign(rng.standard_normal(6).astype(np.float32))
    src.save_weights(tmp_path / "src.weights.h5")
    dst.save_weights(tmp_path / "tpl.weights.h5")
    rules = {"transforms": [{"target": "ab/vars/1", "concat": {"axis": 0, "sources": ["a/vars/1", "b/vars/1"]},
                             "ops": [{"add": {"value": 0.25}}]},
                            {"target": "ab/vars/0", "from": "a/vars/0",
                             "ops": [{"permute": {"axis": 1, "blocks": 2, "order": [0, 0]}}]}]}
    plan = warmstart.plan(str(tmp_path / "src.weights.h5"), str(tmp_path / "tpl.weights.h5"), rules)
    assert "order [0, 0] is not a permutation of 0..1" in plan.problems()[0]
    rules = {"transforms": rules["transforms"][:1], "exclude": ["ab/vars/0"]}
    report = warmstart.transfer(str(tmp_path / "src.weights.h5"), str(tmp_path / "tpl.weights.h5"),
                                str(tmp_path / "out"), rules=rules)
    assert report.ok and report.strategy == "stream" and report.plan.unused_source == ("a/vars/0", "b/vars/0")
    dst.load_weights(tmp_path / "out" / "model.weights.h5")
    want = np.concatenate([np.asarray(src.get_layer("a").bias), np.asarray(src.get_layer("b").bias)]) + 0.25
    np.testing.assert_allclose(np.asarray(dst.get_layer("ab").bias), want)


@pytest.mark.parametrize("strategy", ["stream", "restore", "assign"])
def test_partitioned_target_through_block_ops(tmp_path, strategy):
    builders.partitioned_checkpoint(tmp_path / "tpl")  # emb [10, 4] stored as 3 slices on axis 0
    emb_t = np.arange(40, dtype=np.float32).reshape(4, 10)
    builders.tf1_checkpoint(tmp_path / "src", {"emb_t": emb_t, "dense/kernel": np.ones((4, 2), np.float32)})
    rules = {"transforms": [{"target": "emb", "from": "emb_t", "ops": [{"transpose": {}}]}]}
    got, _ = _transfer(str(tmp_path / "src"), str(tmp_path / "tpl"), tmp_path / "out", rules, strategy)
    np.testing.assert_array_equal(got["emb"], emb_t.T)
    np.testing.assert_array_equal(got["dense/kernel"], np.ones((4, 2), np.float32))
