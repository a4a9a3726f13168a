"""The restore and assign strategies, copy_variables and copy_weights: every output is loaded back by
TensorFlow / Keras and compared value by value with what was expected (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import builders  # noqa: E402
import fsspec
import keras  # noqa: E402
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402  (a hard dependency: missing must fail, not skip)
from servers import clear_fs_caches, upload_dir  # noqa: E402

import warmstart  # noqa: E402
from warmstart import InputError, PlanError, TargetError, UsageError, WarmStartError  # noqa: E402
from warmstart.strategies import (  # noqa: E402
    UninitializedVariableError,
    copy_variables,
    copy_weights,
    local_checkpoint_copy,
)
from warmstart.formats.bundle import BundleReader  # noqa: E402

RNG = np.random.default_rng(42)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- helpers


def build_graph(initial: dict[str, np.ndarray], ref: tuple[str, ...] = (), partitioned: dict[str, int] | None = None):
    """A tf.Graph with one variable per name, initialised from constants (so its initializers need no feed)."""
    graph = tf.Graph()
    with graph.as_default():
        for name, value in initial.items():
            if partitioned and name in partitioned:
                tf.compat.v1.get_variable(name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                          initializer=_sliced_initializer(value),
                                          partitioner=tf.compat.v1.fixed_size_partitioner(partitioned[name]))
            else:
                tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=name not in ref)
    return graph


def _sliced_initializer(value: np.ndarray):
    """Initialises each part of a partitioned variable with its slice of ``value``."""

    def init(shape, dtype=None, partition_info=None):
        offset = partition_info.var_offset if partition_info is not None else [0] * len(shape)
        return tf.constant(value[tuple(slice(o, o + n) for o, n in zip(offset, shape))], dtype=dtype)

    return init


def write_meta(path: Path, initial: dict[str, np.ndarray], **kwargs) -> str:
    """Export the MetaGraph of ``build_graph(initial)`` to ``path``; returns its path."""
    graph = build_graph(initial, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with graph.as_default():
        tf.compat.v1.train.export_meta_graph(filename=str(path), graph=graph)
    return str(path)


def assert_published(out) -> str:
    """The output directory is complete: checkpoint, state file, manifest; returns the checkpoint TF finds."""
    out = Path(out)
    assert (out / "checkpoint").is_file() and (out / "warmstart.json").is_file()
    assert (out / "model.ckpt.index").is_file() and (out / "model.ckpt.data-00000-of-00001").is_file()
    found = tf.train.latest_checkpoint(str(out))
    assert found == str(out / "model.ckpt")
    return found


def load_with_tf1_saver(meta: str, out) -> dict[str, np.ndarray]:
    """Restore the output with a TF1 Saver into a fresh graph imported from ``meta``; values by variable
    (partitioned variables reassembled from their parts by TF's own PartitionedVariable-free read:
    the full value is read with the checkpoint reader as well)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.train.import_meta_graph(meta)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, assert_published(out))
            variables = tf.compat.v1.global_variables()
            return {v.op.name: value for v, value in zip(variables, sess.run(variables))}


def manifest(out) -> dict:
    return json.loads((Path(out) / "warmstart.json").read_text())


# ----------------------------------------------------------------------------- shared inputs

TARGET_INIT = {
    "model/enc/w": np.full((4, 3), 0.5, np.float32),
    "model/enc/b": np.full((3,), -0.5, np.float32),
    "model/head/w": np.full((3, 2), 2.0, np.float32),
    "model/head/b": np.full((2,), -2.0, np.float32),
    "global_step": np.array(0, np.int64),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real TF checkpoints and MetaGraphs shared by the file-based tests."""
    root = tmp_path_factory.mktemp("tf-strategies")
    same = {name: rand(*v.shape) if v.dtype == np.float32 else np.array(1234, np.int64)
            for name, v in TARGET_INIT.items()}
    same["model/enc/w/Adam"] = rand(4, 3)  # optimizer slot: unused by the plan
    src_same = builders.tf1_checkpoint(root / "src-same", same, step=1234)
    bert = {"bert/enc/w": rand(4, 3), "bert/enc/b": rand(3), "bert/pooler/w": rand(3, 3)}
    src_bert = builders.tf1_checkpoint(root / "src-bert", bert)
    meta = write_meta(root / "target" / "model.meta", TARGET_INIT, ref=("model/enc/b",))
    return {"root": root, "src_same": src_same, "src_bert": src_bert, "meta": meta}


@pytest.fixture(scope="module")
def kfiles(tmp_path_factory):
    """Keras model A trained one step (TF2 checkpoint with its Adam state) and model B as a .keras file."""
    root = tmp_path_factory.mktemp("keras")
    a = builders.keras_checkpoint(root / "a", with_optimizer=True, seed=0)
    b_model = builders.keras_model(seed=5)
    b_path = str(root / "b" / "model.keras")
    os.makedirs(os.path.dirname(b_path))
    b_model.save(b_path)
    return {"a": a, "b": b_path, "b_weights": keras_weights(b_model)}


def keras_weights(model) -> dict[str, np.ndarray]:
    return {f"{layer.name}/{w.name}": np.array(w.numpy()) for layer in model.layers for w in layer.weights}


def assert_weights_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        builders.assert_values_equal(got[name], value, name)


# ----------------------------------------------------------------------------- seed case 1: restore, same names


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_tf1_checkpoint_into_meta_graph_with_the_same_names(files, tmp_path, strategy):
    out = tmp_path / "out"
    calls = []
    report = warmstart.transfer(files["src_same"]["prefix"], files["meta"], str(out), strategy=strategy,
                                progress=lambda done, total, name: calls.append((done, total, name)))
    assert report.strategy == strategy and report.ok
    assert report.plan.counts == {"copy": 4, "cast": 0, "init": 1, "skip": 0, "error": 0}
    got = load_with_tf1_saver(files["meta"], out)
    src = files["src_same"]["values"]
    assert set(got) == set(TARGET_INIT)
    for name in TARGET_INIT:
        expected = TARGET_INIT[name] if name == "global_step" else src[name]  # global_step: excluded by default
        builders.assert_values_equal(got[name], expected, name)
    # progress: one call per transferred variable, cumulative, ending at the total
    assert [c[2] for c in calls] == [e.target for e in report.plan.transferred]
    assert calls[-1][0] == calls[-1][1] == report.bytes_read == sum(src[n].nbytes for n in src if n.startswith("model/")
                                                                    and not n.endswith("Adam"))
    doc = manifest(out)
    assert doc["strategy"] == strategy and doc["plan"]["status"] == "ok"
    assert {t["key"] for t in doc["checkpoint"]["tensors"]} == set(TARGET_INIT)
    # TF saved in place: the published files and nothing else (no work copies, no TF temp directories)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint", "model.ckpt.data-00000-of-00001", "model.ckpt.index", "warmstart.json"]


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_corrupt_source_fails_and_leaves_the_local_output_empty(files, tmp_path, strategy):
    src = tmp_path / "src"
    shutil.copytree(files["src_same"]["dir"], src)
    prefix = str(src / Path(files["src_same"]["prefix"]).name)
    entry = BundleReader(prefix).records["model/head/w"].entry  # a tensor the plan copies
    data = next(src.glob("*.data-*"))
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(WarmStartError, match="(?i)crc|corrupt|checksum") as failure:
        warmstart.transfer(prefix, files["meta"], str(out), strategy=strategy)
    assert "most recent call last" not in str(failure.value)  # the cause, not TF's graph-mode stack
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- seed case 2: renamed subset


def test_renamed_subset_from_files_with_assign(files, tmp_path):
    out = tmp_path / "out"
    rules = {"include": ["model/enc/.*"], "rename": [[r"model/(.*)", r"bert/\1"]]}
    report = warmstart.transfer(files["src_bert"]["prefix"], files["meta"], str(out), rules=rules, strategy="assign")
    assert report.plan.counts["copy"] == 2 and report.plan.unused_source == ("bert/pooler/w",)
    got = load_with_tf1_saver(files["meta"], out)
    src = files["src_bert"]["values"]
    builders.assert_values_equal(got["model/enc/w"], src["bert/enc/w"])
    builders.assert_values_equal(got["model/enc/b"], src["bert/enc/b"])  # a ref variable
    for name in ("model/head/w", "model/head/b", "global_step"):
        builders.assert_values_equal(got[name], TARGET_INIT[name], name)


def live_pair():
    """A source graph (bert/...) and a destination graph (model/...), each in its own initialised session."""
    src_init = {"bert/enc/w": rand(4, 3), "bert/enc/b": rand(3), "bert/emb": rand(10, 4), "global_step": np.array(7)}
    dst_init = {"model/enc/w": np.zeros((4, 3), np.float32), "model/enc/b": np.zeros(3, np.float32),
                "model/emb": np.zeros((10, 4), np.float32), "model/head/w": np.ones((3, 2), np.float32)}
    src_graph = build_graph(src_init, partitioned={"bert/emb": 3})  # a partitioned source variable
    dst_graph = build_graph(dst_init, ref=("model/enc/b",))
    sessions = []
    for graph in (src_graph, dst_graph):
        with graph.as_default():
            init = tf.compat.v1.global_variables_initializer()
        sess = tf.compat.v1.Session(graph=graph)
        sess.run(init)
        sessions.append(sess)
    return src_graph, dst_graph, sessions[0], sessions[1], src_init, dst_init


LIVE_RULES = {"include": ["model/(enc|emb).*"], "rename": [[r"model/(.*)", r"bert/\1"]]}


def dst_values(graph, sess):
    with graph.as_default():
        variables = tf.compat.v1.global_variables()
    return {v.op.name: value for v, value in zip(variables, sess.run(variables))}


def test_copy_variables_between_live_graphs():
    src_graph, dst_graph, src, dst, src_init, dst_init = live_pair()
    with src, dst:
        report = copy_variables(src, (dst_graph, dst), rules=LIVE_RULES)
        assert report.strategy == "assign" and report.plan.counts["copy"] == 3 and report.output is None
        assert report.bytes_read == sum(src_init[n].nbytes for n in ("bert/enc/w", "bert/enc/b", "bert/emb"))
        got = dst_values(dst_graph, dst)
        for name in ("enc/w", "enc/b", "emb"):
            builders.assert_values_equal(got[f"model/{name}"], src_init[f"bert/{name}"], name)
        builders.assert_values_equal(got["model/head/w"], dst_init["model/head/w"], "not included: untouched")
        # A second sync (the source trained on) reuses the assign ops instead of growing the destination graph.
        with src_graph.as_default():
            bias = next(v for v in tf.compat.v1.global_variables() if v.op.name == "bert/enc/b")
            src.run(bias.assign_add(np.ones(3, np.float32)))
        ops_before = len(dst_graph.get_operations())
        copy_variables((src_graph, src), dst, rules=LIVE_RULES)
        assert len(dst_graph.get_operations()) == ops_before
        builders.assert_values_equal(dst_values(dst_graph, dst)["model/enc/b"], src_init["bert/enc/b"] + 1)


def test_copy_variables_refuses_a_session_of_another_graph_and_closed_sessions():
    src_graph, dst_graph, src, dst, _, _ = live_pair()
    with src, dst:
        with pytest.raises(UsageError, match="the session runs graph .* but the variables belong to graph .*"
                                             "run each graph in its own session"):
            copy_variables(src, (dst_graph, src), rules=LIVE_RULES)
        with pytest.raises(UsageError, match="expected a tf.compat.v1.Session"):
            copy_variables(src_graph, dst, rules=LIVE_RULES)
    with pytest.raises(UsageError, match="closed"):
        copy_variables(src, dst, rules=LIVE_RULES)


def test_copy_variables_names_an_uninitialized_source_variable():
    src_graph, dst_graph, _, dst, _, dst_init = live_pair()
    with tf.compat.v1.Session(graph=src_graph) as fresh, dst:  # nothing initialised in this session
        with pytest.raises(InputError, match="source variable 'bert/e(nc/[wb]|mb)' is not initialized") as info:
            copy_variables(fresh, dst, rules=LIVE_RULES)
        assert isinstance(info.value, UninitializedVariableError)


def test_copy_variables_plan_failure_leaves_the_destination_untouched():
    src_graph, dst_graph, src, dst, _, dst_init = live_pair()
    with src, dst:
        ops_before = len(dst_graph.get_operations())
        with pytest.raises(PlanError, match="4 problem.*'model/emb' is not in the source") as info:
            copy_variables(src, dst)  # no rename rules: nothing matches
        assert "target 'model/enc/b': 'model/enc/b' is not in the source; closest source name: 'bert/enc/b' " \
               "(add a rename rule, or on_missing: init)" in info.value.plan.problems()
        assert len(dst_graph.get_operations()) == ops_before
        got = dst_values(dst_graph, dst)
        for name, value in dst_init.items():
            builders.assert_values_equal(got[name], value, name)


def test_copy_variables_within_one_graph_swaps_without_reading_written_values():
    init = {"a/w": rand(3, 2), "b/w": rand(3, 2), "c": np.array(1.5, np.float32)}
    graph = build_graph(init)
    with tf.compat.v1.Session(graph=graph) as sess:
        with graph.as_default():
            sess.run(tf.compat.v1.global_variables_initializer())
        rules = {"rename": [["a/(.*)", r"b/\1"], ["b/(.*)", r"a/\1"], ["c", None]]}
        copy_variables(sess, sess, rules=rules)
        got = dst_values(graph, sess)
    builders.assert_values_equal(got["a/w"], init["b/w"])
    builders.assert_values_equal(got["b/w"], init["a/w"])


# b/w takes a/w, and x/w is a concat of a/w and b/w: x/w must get b/w's value from before the copy.
SELF_CONCAT = {"include": ["b/w", "x/w"], "allow_shared_source": True, "rename": [["b/w", "a/w"]],
               "transforms": [{"target": "x/w", "concat": {"axis": 0, "sources": ["a/w", "b/w"]}}]}


def test_copy_variables_within_one_graph_reads_a_concats_sources_before_writing():
    init = {"a/w": rand(3, 2), "b/w": rand(3, 2), "x/w": rand(6, 2)}
    graph = build_graph(init)
    with tf.compat.v1.Session(graph=graph) as sess:
        with graph.as_default():
            sess.run(tf.compat.v1.global_variables_initializer())
        copy_variables(sess, sess, rules=SELF_CONCAT)
        got = dst_values(graph, sess)
    builders.assert_values_equal(got["b/w"], init["a/w"])
    builders.assert_values_equal(got["x/w"], np.concatenate([init["a/w"], init["b/w"]]))


def test_copy_weights_within_one_model_reads_a_concats_sources_before_writing():
    i1, i2 = keras.Input((3,)), keras.Input((6,))
    a, b, x = (keras.layers.Dense(2, name=n) for n in "abx")
    model = keras.Model([i1, i2], [b(keras.layers.Dense(3)(a(i1))), x(i2)])
    for v in model.weights:
        v.assign(rand(*v.shape))
    before = {v.path: v.numpy().copy() for v in model.weights}
    rules = json.loads(json.dumps(SELF_CONCAT).replace("/w", "/kernel"))
    report = copy_weights(model, model, rules=rules)
    assert [e.target for e in report.plan.transferred] == ["b/kernel", "x/kernel"]  # b is written first
    builders.assert_values_equal(model.get_layer("b").kernel.numpy(), before["a/kernel"])
    builders.assert_values_equal(model.get_layer("x").kernel.numpy(),
                                 np.concatenate([before["a/kernel"], before["b/kernel"]]))


# ----------------------------------------------------------------------------- seed case 3: Keras


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_keras_checkpoint_with_optimizer_into_keras_file(kfiles, tmp_path, strategy):
    out = tmp_path / "out"
    report = warmstart.transfer(kfiles["a"]["prefix"], kfiles["b"], str(out), strategy=strategy)
    assert report.plan.counts["copy"] == 4 and report.keras_weights.endswith("model.weights.h5")
    expected = kfiles["a"]["weights"]
    b2 = builders.keras_model(seed=7)
    tf.train.Checkpoint(model=b2).restore(assert_published(out)).assert_existing_objects_matched()
    assert_weights_equal(keras_weights(b2), expected)
    b3 = builders.keras_model(seed=9)
    b3.load_weights(str(out / "model.weights.h5"))
    assert_weights_equal(keras_weights(b3), expected)
    assert not np.array_equal(kfiles["b_weights"]["enc/kernel"], expected["enc/kernel"])


def test_keras_builder_target(kfiles, tmp_path):
    out = tmp_path / "out"
    report = warmstart.transfer(kfiles["a"]["prefix"], "py:builders:keras_model", str(out), strategy="assign")
    assert report.plan.target.kind == "keras"
    b2 = builders.keras_model(seed=3)
    tf.train.Checkpoint(model=b2).restore(assert_published(out)).assert_existing_objects_matched()
    assert_weights_equal(keras_weights(b2), kfiles["a"]["weights"])


def test_copy_weights_between_live_keras_models():
    a, b = builders.keras_model(seed=0), builders.keras_model(seed=5)
    report = copy_weights(a, b)
    assert report.plan.counts["copy"] == 4 and report.strategy == "assign"
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class TwoLayers(keras.Model):
    """Subclassed model: weights are tracked by attribute name; ``get_weights()`` follows creation order."""

    def __init__(self, names=("enc", "head"), head_first=False, **kwargs):
        super().__init__(**kwargs)
        order = list(reversed(names)) if head_first else list(names)
        for n in order:
            setattr(self, n, keras.layers.Dense(4, name=n,
                                                kernel_initializer=keras.initializers.RandomNormal(seed=len(n))))
        self.names = names

    def call(self, x):
        return getattr(self, self.names[1])(getattr(self, self.names[0])(x))


def built(model):
    model(np.zeros((1, 4), np.float32))
    return model


def test_copy_weights_matches_by_path_not_position():
    a = built(TwoLayers())
    b = built(TwoLayers(head_first=True))  # same attributes, created in the other order
    a.enc.kernel.assign(rand(4, 4))
    a.head.kernel.assign(rand(4, 4))
    # set_weights(a.get_weights()) would silently swap the layers (same shapes):
    positional = built(TwoLayers(head_first=True))
    positional.set_weights(a.get_weights())
    assert not np.array_equal(positional.enc.kernel.numpy(), a.enc.kernel.numpy())
    copy_weights(a, b)
    for layer in ("enc", "head"):
        for w in ("kernel", "bias"):
            np.testing.assert_array_equal(getattr(getattr(b, layer), w).numpy(), getattr(getattr(a, layer), w).numpy())


def test_copy_weights_renamed_layers_fail_clearly_or_follow_rename_rules():
    a = built(TwoLayers())
    a.enc.kernel.assign(rand(4, 4))
    c = built(TwoLayers(names=("encoder", "decoder")))
    before = c.get_weights()
    with pytest.raises(PlanError, match="'decoder/kernel' is not in the source") as info:
        copy_weights(a, c)
    assert not info.value.plan.ok
    for x, y in zip(before, c.get_weights()):
        np.testing.assert_array_equal(x, y)
    by_layer_names = {"rename": [[r"encoder/(.*)", r"enc/\1"], [r"decoder/(.*)", r"head/\1"]]}
    # rules written against object paths (what names were before layer names) still apply
    by_object_paths = {"rename": [[r"model/encoder/(.*)", r"model/enc/\1"], [r"model/decoder/(.*)", r"model/head/\1"]]}
    for rules in (by_layer_names, by_object_paths):
        c = built(TwoLayers(names=("encoder", "decoder")))
        copy_weights(a, c, rules=rules)
        np.testing.assert_array_equal(c.encoder.kernel.numpy(), a.enc.kernel.numpy())
        np.testing.assert_array_equal(c.decoder.bias.numpy(), a.head.bias.numpy())


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_tf1_source_into_live_tf_module_with_a_cast(tmp_path, strategy):
    module = builders._tf2_module(seed=2)
    table = warmstart.signature_of(module)
    src_values = {}
    for v in table.variables:  # TF1 names net/...; dense/w stored as bfloat16 (cast back to float32)
        np_dtype = np.dtype(v.dtype)
        value = (np.arange(int(np.prod(v.shape)), dtype=np.float64).reshape(v.shape) * 0.5 + 1).astype(np_dtype)
        if v.name == "model/dense/w":
            value = value.astype(ml_dtypes.bfloat16)
        src_values["net/" + v.name[len("model/"):]] = value
    src = builders.tf1_checkpoint(tmp_path / "src", src_values)
    out = tmp_path / "out"
    calls = []
    report = warmstart.transfer(src["prefix"], module, str(out), strategy=strategy,
                                rules={"rename": [["model/(.*)", r"net/\1"]], "on_dtype_mismatch": "cast"},
                                progress=lambda *a: calls.append(a))
    assert report.plan.counts["cast"] == 1 and report.plan.counts["copy"] == len(table) - 1
    assert report.keras_weights is None and len(calls) == len(table) and calls[-1][0] == calls[-1][1]
    fresh = builders._tf2_module(seed=3)
    tf.train.Checkpoint(model=fresh).restore(assert_published(out)).assert_existing_objects_matched()
    for target_module in (fresh, module):  # the live module was filled in place
        got = {name: v.numpy() for name, v in _trackables(target_module).items()}
        for name, value in got.items():
            expected = src_values["net/" + name[len("model/"):]]
            builders.assert_values_equal(value, expected.astype(value.dtype), name)
    assert fresh.dense.w.dtype == tf.float32


def _trackables(obj):
    from warmstart.tables import trackable_variables

    return trackable_variables(obj)


# ----------------------------------------------------------------------------- casts, partitions, templates


@pytest.fixture(scope="module")
def bf16(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    value = (np.arange(12, dtype=np.float32).reshape(3, 4) * 0.37).astype(ml_dtypes.bfloat16)
    src = builders.tf1_checkpoint(root / "src", {"w": value, "b": np.ones(4, np.float32)})
    meta = write_meta(root / "tpl" / "model.meta", {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)})
    return {"value": value, "src": src, "meta": meta}


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_bf16_source_cast_to_float32_only_when_asked(bf16, tmp_path, strategy):
    fail = tmp_path / "fail"
    with pytest.raises(PlanError, match="dtype bfloat16 in the source, float32 in the target"):
        warmstart.transfer(bf16["src"]["prefix"], bf16["meta"], str(fail), strategy=strategy)
    assert not fail.exists() or not any(fail.iterdir())
    out = tmp_path / "out"
    report = warmstart.transfer(bf16["src"]["prefix"], bf16["meta"], str(out), strategy=strategy,
                                rules={"on_dtype_mismatch": "cast"})
    assert report.plan.counts["cast"] == 1 and report.plan.counts["copy"] == 1
    got = load_with_tf1_saver(bf16["meta"], out)
    assert got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], bf16["value"].astype(np.float32))
    np.testing.assert_array_equal(got["b"], np.ones(4, np.float32))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitioned")
    part = builders.partitioned_checkpoint(root / "part")
    full = part["values"]
    plain_meta = write_meta(root / "plain" / "model.meta", {k: np.zeros_like(v) for k, v in full.items()})
    other = {k: v * 3 + 1 for k, v in full.items()}
    plain_src = builders.tf1_checkpoint(root / "plain-src", other)
    return {"part": part, "full": full, "plain_meta": plain_meta, "plain_src": plain_src, "other": other}


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_partitioned_source_into_unpartitioned_meta_target(parts, tmp_path, strategy):
    out = tmp_path / "out"
    warmstart.transfer(parts["part"]["prefix"], parts["plain_meta"], str(out), strategy=strategy)
    got = load_with_tf1_saver(parts["plain_meta"], out)
    assert set(got) == {"emb", "dense/kernel"}
    for name, value in parts["full"].items():
        builders.assert_values_equal(got[name], value, name)


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_plain_source_into_partitioned_meta_target(parts, tmp_path, strategy):
    # The partitioned graph's initializers need fed placeholders: they never run, every variable is copied.
    out = tmp_path / "out"
    warmstart.transfer(parts["plain_src"]["prefix"], parts["part"]["meta"], str(out), strategy=strategy)
    assert warmstart.read_table(str(out))["emb"].partitions == 3
    got = load_with_tf1_saver(parts["part"]["meta"], out)
    for spec in parts["part"]["partitions"]["emb"]:
        start, n = spec["offset"][0], spec["shape"][0]
        builders.assert_values_equal(got[spec["variable"]], parts["other"]["emb"][start:start + n], spec["variable"])
    for name, value in builders.load_values(out / "model.ckpt").items():
        builders.assert_values_equal(value, parts["other"][name], name)


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_template_checkpoint_with_meta_keeps_template_values(files, tmp_path, strategy):
    tpl_values = {k: v + 10 if v.dtype == np.float32 else np.array(5, np.int64) for k, v in TARGET_INIT.items()}
    # Its initializers need fed placeholders: the kept values must come from the template itself.
    tpl = builders.tf1_checkpoint(tmp_path / "tpl", tpl_values)
    out = tmp_path / "out"
    rules = {"include": ["model/enc/.*"], "rename": [[r"model/(.*)", r"bert/\1"]]}
    report = warmstart.transfer(files["src_bert"]["prefix"], tpl["dir"], str(out), rules=rules, strategy=strategy)
    assert report.strategy == strategy
    got = load_with_tf1_saver(tpl["meta"], out)
    builders.assert_values_equal(got["model/enc/w"], files["src_bert"]["values"]["bert/enc/w"])
    for name in ("model/head/w", "model/head/b", "global_step"):
        builders.assert_values_equal(got[name], tpl_values[name], name)


def test_template_checkpoint_without_meta_needs_stream(files, tmp_path):
    tpl = tmp_path / "tpl"
    shutil.copytree(files["src_same"]["dir"], tpl)
    for meta in tpl.glob("*.meta"):
        meta.unlink()
    with pytest.raises(UsageError, match="has no model.ckpt-1234.meta next to it: use --strategy stream"):
        warmstart.transfer(files["src_same"]["prefix"], str(tpl), str(tmp_path / "out"), strategy="restore",
                           rules={"exclude": []})


def test_meta_target_whose_kept_variables_need_fed_initializers_fails_clearly(files, tmp_path):
    # src_same's own .meta initialises every variable from a fed placeholder; global_step is kept (excluded).
    with pytest.raises(TargetError, match="initializers of the variables the plan keeps failed.*template checkpoint"):
        warmstart.transfer(files["src_same"]["prefix"], files["src_same"]["meta"], str(tmp_path / "out"),
                           strategy="assign")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_live_session_target_must_be_initialized_and_is_filled_in_place(files, tmp_path):
    graph = build_graph(TARGET_INIT)
    with tf.compat.v1.Session(graph=graph) as sess:
        with pytest.raises(UninitializedVariableError, match="keeps its value by the plan but is not initialized"):
            warmstart.transfer(files["src_same"]["prefix"], sess, str(tmp_path / "fail"), strategy="assign")
        with graph.as_default():
            sess.run(tf.compat.v1.global_variables_initializer())
        out = tmp_path / "out"
        warmstart.transfer(files["src_same"]["prefix"], sess, str(out), strategy="restore")
        live = dst_values(graph, sess)
    builders.assert_values_equal(live["model/enc/w"], files["src_same"]["values"]["model/enc/w"])
    got = builders.load_values(assert_published(out))
    builders.assert_values_equal(got["model/head/b"], files["src_same"]["values"]["model/head/b"])
    builders.assert_values_equal(got["global_step"], TARGET_INIT["global_step"])


# ----------------------------------------------------------------------------- object storage


def test_local_checkpoint_copy_fetches_only_the_requested_tensors(files, tmp_path):
    mem = fsspec.filesystem("memory")
    root = f"/ws-{uuid.uuid4().hex[:8]}"
    for path in Path(files["src_same"]["dir"]).iterdir():
        mem.pipe_file(f"{root}/{path.name}", path.read_bytes())
    reader = BundleReader(f"memory://{root}")
    local = local_checkpoint_copy(reader, str(tmp_path / "copy"), keys=["model/head/w"])
    values = tf.train.load_checkpoint(local)
    builders.assert_values_equal(values.get_tensor("model/head/w"), files["src_same"]["values"]["model/head/w"])
    assert not values.has_tensor("model/enc/w/Adam")  # not fetched: not in the copy at all
    whole = local_checkpoint_copy(reader, str(tmp_path / "whole"))
    for name, value in builders.load_values(whole).items():
        builders.assert_values_equal(value, files["src_same"]["values"][name], name)
    mem.rm(root, recursive=True)


@pytest.mark.integration
@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_source_on_s3_into_meta_target(files, tmp_path, s3_server, s3_bucket, monkeypatch, strategy):
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, files["src_same"]["dir"], f"{s3_bucket}/src")
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    clear_fs_caches()
    out = tmp_path / "out"
    report = warmstart.transfer(f"{s3_bucket}/src", files["meta"], str(out), strategy=strategy)
    assert report.plan.source.origin.startswith("s3://")
    got = load_with_tf1_saver(files["meta"], out)
    for name in ("model/enc/w", "model/enc/b", "model/head/w", "model/head/b"):
        builders.assert_values_equal(got[name], files["src_same"]["values"][name], name)
    builders.assert_values_equal(got["global_step"], TARGET_INIT["global_step"])


def test_a_target_that_changed_since_planning_is_refused(files, tmp_path):
    planned = warmstart.plan(files["src_same"]["prefix"], files["meta"])
    grown = dict(TARGET_INIT, **{"model/head/w": np.zeros((3, 5), np.float32)})
    with pytest.raises(TargetError, match="does not match the planned target.*'model/head/w' is float32 \\[3, 5\\], "
                                          "planned as float32 \\[3, 2\\]"):
        warmstart.transfer(files["src_same"]["prefix"], build_graph(grown), str(tmp_path / "out"),
                           strategy="assign", plan=planned)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
