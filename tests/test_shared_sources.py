"""``allow_shared_source: true``: one source variable fills several target variables. Every strategy and
live copy must put the source value into EVERY target that shares it (a TF1 ``Saver(var_list=dict)``
keyed by source name keeps only one of them). Real checkpoints and graphs, loaded back by TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import builders  # noqa: E402
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402
from test_tf_strategies import (  # noqa: E402
    assert_published,
    build_graph,
    dst_values,
    load_with_tf1_saver,
    write_meta,
)

import warmstart  # noqa: E402
from warmstart.strategies import copy_variables, copy_weights  # noqa: E402

SHARED = {"allow_shared_source": True, "rename": [["^(a|b)$", "src"]]}
SRC = np.arange(12, dtype=np.float32).reshape(4, 3) * 0.25 + 1
OTHER = np.full((3,), 7.0, np.float32)
TARGET = {"a": np.zeros((4, 3), np.float32), "b": np.full((4, 3), -1.0, np.float32), "other": np.zeros(3, np.float32)}


def shared_target_graph():
    """The ``py:`` builder target: a, b (both filled from ``src``) and other."""
    return build_graph(TARGET)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return builders.tf1_checkpoint(tmp_path_factory.mktemp("shared-src") / "src", {"src": SRC, "other": OTHER})


@pytest.fixture(scope="module")
def meta(tmp_path_factory):
    return write_meta(tmp_path_factory.mktemp("shared-meta") / "model.meta", TARGET)


def assert_shared(got: dict, names=("a", "b")) -> None:
    for name in names:
        builders.assert_values_equal(got[name], SRC.astype(got[name].dtype), name)
    builders.assert_values_equal(got["other"], OTHER, "other")


@pytest.mark.parametrize("strategy", ["restore", "assign"])
@pytest.mark.parametrize("kind", ["meta", "builder"])
def test_shared_source_fills_every_target_of_a_built_graph(src, meta, tmp_path, strategy, kind):
    target = meta if kind == "meta" else "py:test_shared_sources:shared_target_graph"
    out = tmp_path / "out"
    report = warmstart.transfer(src["prefix"], target, str(out), rules=SHARED, strategy=strategy)
    assert report.plan.counts["copy"] == 3 and report.plan.ok
    assert_shared(load_with_tf1_saver(meta, out))
    assert_shared(builders.load_values(assert_published(out)))


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_shared_source_fills_every_variable_of_a_live_session_target(src, tmp_path, strategy):
    graph = build_graph(TARGET)
    with tf.compat.v1.Session(graph=graph) as sess:
        with graph.as_default():
            sess.run(tf.compat.v1.global_variables_initializer())
        out = tmp_path / "out"
        report = warmstart.transfer(src["prefix"], sess, str(out), rules=SHARED, strategy=strategy)
        assert report.plan.counts["copy"] == 3
        assert_shared(dst_values(graph, sess))  # filled in place
    assert_shared(builders.load_values(assert_published(out)))


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_shared_source_composed_with_a_cast(src, tmp_path, strategy):
    target = dict(TARGET, c=np.zeros((4, 3), np.float64))
    meta = write_meta(tmp_path / "tpl" / "model.meta", target)
    rules = {"allow_shared_source": True, "on_dtype_mismatch": "cast", "rename": [["^(a|b|c)$", "src"]]}
    out = tmp_path / "out"
    report = warmstart.transfer(src["prefix"], meta, str(out), rules=rules, strategy=strategy)
    assert report.plan.counts["copy"] == 3 and report.plan.counts["cast"] == 1
    got = builders.load_values(assert_published(out))
    assert got["c"].dtype == np.float64
    assert_shared(got, names=("a", "b", "c"))


@pytest.mark.parametrize("strategy", ["restore", "assign"])
@pytest.mark.parametrize("partitioned", ["a", "b"])
def test_shared_source_into_a_partitioned_and_a_plain_target(src, tmp_path, strategy, partitioned):
    meta = write_meta(tmp_path / "tpl" / "model.meta", TARGET, partitioned={partitioned: 2})
    out = tmp_path / "out"
    warmstart.transfer(src["prefix"], meta, str(out), rules=SHARED, strategy=strategy)
    assert warmstart.read_table(str(out))[partitioned].partitions == 2
    assert_shared(builders.load_values(assert_published(out)))  # partitions read back as one full value


def test_copy_variables_with_a_shared_source(tmp_path):
    """A guard: live copies read the source per target (a partitioned source into a plain and a partitioned target)."""
    src_graph = build_graph({"src": SRC, "other": OTHER}, partitioned={"src": 2})
    dst_graph = build_graph(TARGET, partitioned={"b": 2})
    with tf.compat.v1.Session(graph=src_graph) as s, tf.compat.v1.Session(graph=dst_graph) as d:
        for graph, sess in ((src_graph, s), (dst_graph, d)):
            with graph.as_default():
                sess.run(tf.compat.v1.global_variables_initializer())
        report = copy_variables(s, d, rules=SHARED)
        assert report.plan.counts["copy"] == 3
        with dst_graph.as_default():  # read back through a checkpoint: the partitions as one full value
            saved = tf.compat.v1.train.Saver().save(d, str(tmp_path / "dst"))
    assert_shared(builders.load_values(saved))


class _Pair(tf.Module):
    def __init__(self, a, b, name="model"):
        super().__init__(name=name)
        self.a = tf.Variable(a, name="a")
        self.b = tf.Variable(b, name="b")


def test_tf2_targets_and_copy_weights_with_a_shared_source(tmp_path):
    """A guard: TF2 restore reads each source key once and assigns it to every target sharing it."""
    rules = {"allow_shared_source": True, "rename": [["model/(a|b)", "model/a"]]}
    source = _Pair(SRC, SRC * 0)
    prefix = tf.train.Checkpoint(model=source).write(str(tmp_path / "src" / "ckpt"))
    for strategy in ("restore", "assign"):
        target = _Pair(TARGET["a"], TARGET["b"])
        warmstart.transfer(prefix, target, str(tmp_path / strategy), rules=rules, strategy=strategy)
        np.testing.assert_array_equal(target.a.numpy(), SRC)
        np.testing.assert_array_equal(target.b.numpy(), SRC)
    target = _Pair(TARGET["a"], TARGET["b"])
    copy_weights(source, target, rules=rules)
    np.testing.assert_array_equal(target.b.numpy(), SRC)
