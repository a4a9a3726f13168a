"""Tables of TensorFlow targets (MetaGraphs, live graphs, Keras models, tf.Modules, builders),
checked against the checkpoints TensorFlow itself writes for the same objects."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import subprocess
import sys
import textwrap

import fsspec
import keras  # noqa: E402
import numpy as np
import pytest
import tensorflow as tf  # noqa: E402  (a hard dependency: missing must fail, not skip)

from warmstart.errors import InputNotFoundError, TargetError, UsageError  # noqa: E402
from warmstart.tables import (  # noqa: E402
    read_table,  # noqa: E402
    table_from_builder,
    trackable_variables,
    table_from_graph,
    table_from_keras_file,
    table_from_meta_graph,
    table_from_meta_graph_bytes,
    table_from_object,
    table_from_trackable,
)


def signature(table):
    """name -> (shape, dtype, partitions): what must agree between a target and its checkpoint."""
    return {v.name: (v.shape, v.dtype, v.partitions) for v in table.variables}


def checkpoint_table(path_prefix, **objects):
    """read_table of a real tf.train.Checkpoint(**objects) save, without its save_counter."""
    saved = tf.train.Checkpoint(**objects).save(str(path_prefix))
    table = read_table(saved)
    return {n: v for n, v in table.items() if n != "save_counter"}


# ----------------------------------------------------------------------------- TF1 graphs


def build_tf1_graph():
    """A TF1 graph with a ref variable, resource variables (bfloat16, string), a 3-way partitioned
    variable and a local variable (which a default Saver does not save)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("dense/kernel", shape=[3, 4], use_resource=False)
        tf.compat.v1.get_variable("dense/bias", shape=[4])
        tf.compat.v1.get_variable("half", shape=[2], dtype=tf.bfloat16)
        tf.compat.v1.get_variable("vocab", shape=[], dtype=tf.string, initializer=tf.compat.v1.constant_initializer("a"))
        tf.compat.v1.get_variable("emb", shape=[10, 4], partitioner=tf.compat.v1.fixed_size_partitioner(3))
        tf.compat.v1.get_variable("counter", shape=[1], collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES])
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        init = tf.compat.v1.global_variables_initializer()
    return graph, saver, init


@pytest.fixture(scope="module")
def tf1(tmp_path_factory):
    graph, saver, init = build_tf1_graph()
    session = tf.compat.v1.Session(graph=graph)
    session.run(init)
    with graph.as_default():  # outside its graph, Saver.save rebuilds itself eagerly and fails on ref variables
        prefix = saver.save(session, str(tmp_path_factory.mktemp("tf1") / "model.ckpt"), global_step=7)
    yield {"graph": graph, "session": session, "prefix": prefix, "meta": prefix + ".meta"}
    session.close()


def test_meta_graph_lists_what_the_saver_saved(tf1):
    table = table_from_meta_graph(tf1["meta"])
    saved = read_table(tf1["prefix"])
    assert table.kind == "tf1-graph"
    assert signature(table) == signature(saved)
    assert {v.name: v.key for v in table.variables} == {v.name: v.key for v in saved.variables}
    assert "counter" not in table


def test_meta_graph_partitioned_variable_is_one_logical_variable(tf1):
    emb = table_from_meta_graph(tf1["meta"])["emb"]
    assert (emb.shape, emb.partitions, emb.key) == ((10, 4), 3, "emb")
    assert emb.initial == "emb/part_0/Assign,emb/part_1/Assign,emb/part_2/Assign"


def test_meta_graph_reads_tf_dtype_names_and_initializers(tf1):
    table = table_from_meta_graph(tf1["meta"])
    assert table["half"].dtype == "bfloat16"
    assert table["vocab"].dtype == "string"
    assert table["global_step"].dtype == "int64"
    assert table["dense/kernel"].initial == "dense/kernel/Assign"


def test_live_graph_and_session_give_the_meta_file_table(tf1):
    from_file = table_from_meta_graph(tf1["meta"])
    for live in (tf1["graph"], tf1["session"]):
        table = table_from_graph(live)
        assert table.variables == from_file.variables
        assert table.origin == f"graph:{id(tf1['graph']):#x}"


def test_meta_graph_from_object_storage(tf1):
    fs = fsspec.filesystem("memory")
    with open(tf1["meta"], "rb") as f:
        fs.pipe("/tf-targets/model.meta", f.read())
    table = table_from_meta_graph("memory://tf-targets/model.meta")
    assert table.variables == table_from_meta_graph(tf1["meta"]).variables
    assert table.origin == "memory:///tf-targets/model.meta"  # resolved, as read_table reports sources


def test_graph_variable_with_unknown_dimension():
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.Variable(tf.zeros([2, 3]), shape=tf.TensorShape([None, 3]), name="ragged")
    assert table_from_graph(graph)["ragged"].shape == (None, 3)


def test_text_format_meta_graph(tf1, tmp_path):
    with tf1["graph"].as_default():
        tf.compat.v1.train.export_meta_graph(str(tmp_path / "model.meta"), graph=tf1["graph"], as_text=True)
    assert table_from_meta_graph(str(tmp_path / "model.meta")).variables == table_from_graph(tf1["graph"]).variables


@pytest.mark.parametrize("data", [b"\xff\xff\xff garbage", b"", b"meta_info_def { }"])
def test_malformed_meta_graph_names_its_origin(data):
    with pytest.raises(TargetError, match=r"s3://bucket/broken\.meta is not a TF MetaGraph"):
        table_from_meta_graph_bytes(data, "s3://bucket/broken.meta")


def test_meta_graph_variable_without_its_op(tf1):
    with tf1["graph"].as_default():
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=tf1["graph"])
    kept = [node for node in meta_graph.graph_def.node if node.name != "dense/bias"]
    del meta_graph.graph_def.node[:]
    meta_graph.graph_def.node.extend(kept)
    with pytest.raises(TargetError, match="x.meta: variable 'dense/bias' is in the 'variables' collection but not"):
        table_from_meta_graph_bytes(meta_graph.SerializeToString(), "x.meta")


def test_missing_meta_graph_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        table_from_meta_graph(str(tmp_path / "absent.meta"))


# ----------------------------------------------------------------------------- Keras


def functional_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="hidden")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs)


def sequential_model():
    return keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dropout(0.1, seed=1), keras.layers.Dense(1)]
    )


def by_object_path(table):
    """A Keras table's variables by their object path (``alias``): what a TF2 checkpoint names them."""
    return {v.object_path or v.name: v for v in table.variables}


def assert_matches_checkpoint(table, saved):
    """The same variables as the checkpoint (by object path), with its shapes, dtypes and real keys."""
    mine = by_object_path(table)
    assert set(mine) == set(saved)
    for name, v in saved.items():
        assert (mine[name].shape, mine[name].dtype, mine[name].key) == (v.shape, v.dtype, v.key), name


@pytest.mark.parametrize("build", [functional_model, sequential_model])
def test_keras_model_names_and_keys_match_its_checkpoint(build, tmp_path):
    model = build()
    table = table_from_trackable(model)
    assert table.kind == "keras" and table.origin == f"keras:{model.name}"
    assert_matches_checkpoint(table, checkpoint_table(tmp_path / "ckpt", model=model))
    # Names are Keras' own variable paths (layer names), never list positions; without an optimizer
    # the first-found path TF keys by is also the object path kept as alias.
    # (a Sequential's or subclassed model's paths begin with the model's own name, which is left out)
    assert all(variable.path in (name, f"{model.name}/{name}") for name, variable in trackable_variables(model).items())
    assert all(v.key == v.object_path + "/.ATTRIBUTES/VARIABLE_VALUE" for v in table.variables)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A functional model after one Adam step, and the checkpoint of model + optimizer."""
    model = functional_model()
    optimizer = keras.optimizers.Adam()
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), epochs=1, verbose=0)
    prefix = tmp_path_factory.mktemp("trained") / "ckpt"
    return model, checkpoint_table(prefix, model=model, optimizer=optimizer)


def test_fresh_model_names_match_a_checkpoint_saved_with_adam(trained):
    _, saved = trained
    model_part = {n: v for n, v in saved.items() if n.startswith("model/")}
    # TF's own keys put the trainable weights under the optimizer; the names do not.
    assert any(v.key.startswith("optimizer/") for v in model_part.values())
    table = by_object_path(table_from_trackable(functional_model()))
    assert {n: (v.shape, v.dtype) for n, v in table.items()} == {n: (v.shape, v.dtype) for n, v in model_part.items()}


def test_trained_model_names_the_same_weights_as_its_checkpoint(trained):
    model, saved = trained
    table = by_object_path(table_from_trackable(model))
    weights = {n: (v.shape, v.dtype) for n, v in table.items() if not n.startswith("model/optimizer/")}
    assert weights == {n: (v.shape, v.dtype) for n, v in saved.items() if n.startswith("model/")}


def test_compiled_model_keys_match_its_own_checkpoint(trained, tmp_path):
    model, _ = trained
    assert_matches_checkpoint(table_from_trackable(model), checkpoint_table(tmp_path / "ckpt", model=model))


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    functional_model().save(path)
    return str(path)


def test_keras_file_names_match_a_checkpoint_of_the_same_architecture(keras_file, tmp_path):
    table = table_from_keras_file(keras_file)
    saved = checkpoint_table(tmp_path / "ckpt", model=functional_model())
    assert (table.kind, table.origin) == ("keras", "file://" + keras_file)
    assert_matches_checkpoint(table, saved)


def test_keras_file_from_object_storage(keras_file):
    fs = fsspec.filesystem("memory")
    with open(keras_file, "rb") as f:
        fs.pipe("/tf-targets/remote.keras", f.read())
    remote = table_from_keras_file("memory://tf-targets/remote.keras")
    assert signature(remote) == signature(table_from_keras_file(keras_file))


def test_keras_file_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        table_from_keras_file(str(tmp_path / "absent.keras"))
    with pytest.raises(InputNotFoundError):
        table_from_keras_file("memory://tf-targets/absent.keras")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(TargetError, match="not a zip archive"):
        table_from_keras_file(str(tmp_path / "bad.keras"))
    with pytest.raises(TargetError, match=r"expected a name ending in '\.keras'"):
        table_from_keras_file(str(tmp_path / "model.h5"))


def test_keras_file_with_a_python_lambda_is_refused(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(TargetError, match="safe_mode"):
        table_from_keras_file(str(tmp_path / "lambda.keras"))


def test_unbuilt_keras_model_is_refused():
    with pytest.raises(TargetError, match="not built"):
        table_from_trackable(keras.Sequential([keras.layers.Dense(2)]))


# ----------------------------------------------------------------------------- tf.Module


class Block(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.zeros([3, 2]))
        self.scale = tf.Variable(tf.ones([2], dtype=tf.bfloat16))


class Net(tf.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.shared = self.block.w  # a second path to the same variable: named once
        self.extra = [tf.Variable(tf.zeros([4])), tf.Variable(0, dtype=tf.int64)]
        self.layers = [Block()]


def test_module_names_and_keys_match_its_checkpoint(tmp_path):
    net = Net()
    table = table_from_trackable(net)
    assert (table.kind, table.origin) == ("module", "module:Net")
    assert_matches_checkpoint(table, checkpoint_table(tmp_path / "ckpt", model=net))
    assert set(table) == {  # block.w is also self.shared, found first (one level up): named once
        "model/shared", "model/block/scale", "model/extra/0", "model/extra/1",
        "model/layers/0/w", "model/layers/0/scale",
    }
    assert table["model/block/scale"].dtype == "bfloat16"
    assert table["model/extra/1"].dtype == "int64"


def test_key_is_tfs_first_found_path_while_the_name_avoids_optimizer_edges(tmp_path):
    root = tf.Module()
    root.deep = tf.Module()
    root.deep.block = tf.Module()
    root.deep.block.w = tf.Variable(1.0)
    root.optimizer = [root.deep.block.w]  # a shorter path, through an optimizer-named edge
    table = table_from_trackable(root, origin="custom", kind="module")
    assert_matches_checkpoint(table, checkpoint_table(tmp_path / "ckpt", model=root))
    assert table["model/deep/block/w"].key == "model/optimizer/0/.ATTRIBUTES/VARIABLE_VALUE"
    assert table.origin == "custom"


def test_module_with_unknown_dimension():
    module = tf.Module()
    module.v = tf.Variable(tf.zeros([2, 3]), shape=tf.TensorShape([None, 3]))
    assert table_from_trackable(module)["model/v"].shape == (None, 3)


# ----------------------------------------------------------------------------- live objects and builders


def test_table_from_object_dispatches_on_kind(tf1):
    assert table_from_object(tf1["session"]).kind == "tf1-graph"
    assert table_from_object(functional_model()).kind == "keras"
    assert table_from_object(Net()).kind == "module"
    with pytest.raises(TargetError, match=r"builtins\.dict; expected a tf\.Graph.*tf\.Module"):
        table_from_object({"w": 1})


BUILDERS = '''
import tensorflow as tf
import keras

def graph():
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.get_variable("w", shape=[2, 2])
    return g

def model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))

def module():
    m = tf.Module()
    m.v = tf.Variable(tf.zeros([3]))
    return m

def number():
    return 42

def broken():
    raise RuntimeError("no GPU here")

not_callable = 3
'''


@pytest.fixture(scope="module")
def builders_module(tmp_path_factory):
    directory = tmp_path_factory.mktemp("builders")
    (directory / "ws_tf_target_builders.py").write_text(textwrap.dedent(BUILDERS))
    (directory / "ws_tf_target_broken.py").write_text("raise ImportError('missing dependency xyz')\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(directory))
        yield "ws_tf_target_builders"


def test_builder_returning_each_accepted_kind(builders_module):
    graph = table_from_builder(f"py:{builders_module}:graph")
    assert (graph.kind, list(graph), graph.origin) == ("tf1-graph", ["w"], f"py:{builders_module}:graph")
    model = table_from_builder(f"py:{builders_module}:model")
    # an unnamed Dense: Keras counts its name (dense, dense_1, ...), so the names are flagged positional
    assert model.kind == "keras" and {v.object_path for v in model.variables} == {"model/_operations/1/_kernel",
                                                                             "model/_operations/1/bias"}
    assert all(v.positional and v.name.startswith("dense") for v in model.variables)
    module = table_from_builder(f"py:{builders_module}:module")
    assert (module.kind, list(module)) == ("module", ["model/v"])


@pytest.mark.parametrize(
    "function, error, message",
    [
        ("number", TargetError, r"builder py:\S+:number returned a builtins\.int; expected a tf\.Graph"),
        ("broken", TargetError, r"builder py:\S+:broken raised RuntimeError: no GPU here"),
        ("absent", TargetError, r"has no attribute 'absent'"),
        ("not_callable", TargetError, r"not_callable is a int, not a function"),
    ],
)
def test_builder_failures_name_the_spec(builders_module, function, error, message):
    with pytest.raises(error, match=message):
        table_from_builder(f"py:{builders_module}:{function}")


def test_builder_module_import_failures(builders_module):
    with pytest.raises(TargetError, match=r"py:no_such_pkg\.mod:build: cannot import module 'no_such_pkg\.mod'"):
        table_from_builder("py:no_such_pkg.mod:build")
    with pytest.raises(TargetError, match=r"py:ws_tf_target_broken:f: .*missing dependency xyz"):
        table_from_builder("py:ws_tf_target_broken:f")


@pytest.mark.parametrize("spec", ["pkg.mod:build", "py:pkg.mod", "py::build", "py:pkg.mod:"])
def test_malformed_builder_spec_is_a_usage_error(spec):
    with pytest.raises(UsageError, match="py:package.module:function"):
        table_from_builder(spec)


def test_importing_the_module_does_not_import_tensorflow():
    code = "import sys, warmstart.tables; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["False", "False"]
