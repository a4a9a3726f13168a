"""TF2 checkpoints of Keras models on both sides: a source checkpoint into a template checkpoint of the new model.

Both name their variables by object paths through the model's list of operations
(``model/_operations/2/_kernel``), which a layer inserted in the middle shifts; each also records the
variable's path (``enc2/kernel``). Layers the user named are matched by those names, so nothing shifts; layers
Keras named by counting are matched by place, as ``load_weights`` does, and flagged positional. Every output is
read back with ``tf.train.Checkpoint(model=...).read(...)`` and compared with weights computed independently.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import warmstart  # noqa: E402


def named(adapter: bool = False) -> keras.Model:
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(4, name="enc1")(x)
    if adapter:
        h = keras.layers.Dense(4, name="adapter")(h)  # the same shape as its neighbours
    h = keras.layers.Dense(4, name="enc2")(h)
    return keras.Model(x, keras.layers.Dense(4, name="head")(h))


def unnamed(reverse: bool = False) -> keras.Model:
    """Three unnamed Dense layers: Keras counts their names in the order they are created."""
    layers = [keras.layers.Dense(4) for _ in range(3)]
    first, second, third = layers[::-1] if reverse else layers
    x = keras.Input((4,), name="x")
    return keras.Model(x, third(second(first(x))))


def randomized(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))
    return model


def written(model: keras.Model, prefix) -> str:
    return tf.train.Checkpoint(model=model).write(str(prefix))


def read_back(model: keras.Model, out) -> keras.Model:
    tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(str(out))).assert_existing_objects_matched()
    return model


def weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v) for v in model.weights}


def test_a_layer_inserted_in_the_middle_shifts_nothing(tmp_path):
    """The adapter sits where enc2 was: enc2 and head still get their own weights, the adapter keeps its own."""
    source = randomized(named(), 1)
    template = randomized(named(adapter=True), 2)
    report = warmstart.transfer(written(source, tmp_path / "src" / "ckpt"), written(template, tmp_path / "new" / "ckpt"),
                                str(tmp_path / "out"), rules={"on_missing": "init"})
    assert report.plan.counts["copy"] == 6 and report.plan.counts["init"] == 2 and not report.plan.positional
    got = weights(read_back(named(adapter=True), tmp_path / "out"))
    want = {**weights(template), **weights(source)}
    assert got.keys() == want.keys()
    for path, value in want.items():
        assert np.array_equal(got[path], value), path


def test_layers_keras_named_match_by_place_as_load_weights_does(tmp_path):
    """The target's layers were created in the other order: their counted names are swapped, their places not."""
    source = randomized(unnamed(), 3)
    keras.backend.clear_session()  # a new process's counts: the target's first layer is dense_2
    template = unnamed(reverse=True)
    assert [v.path for v in template.weights][0] == "dense_2/kernel"
    report = warmstart.transfer(written(source, tmp_path / "src" / "ckpt"), written(template, tmp_path / "new" / "ckpt"),
                                str(tmp_path / "out"))
    assert report.plan.counts["copy"] == 6 and len(report.plan.positional) == 6
    got = read_back(unnamed(reverse=True), tmp_path / "out")
    for g, w in zip(got.weights, source.weights):
        assert np.array_equal(np.asarray(g), np.asarray(w)), (g.path, w.path)


def test_an_object_path_through_a_list_with_no_names_is_flagged(tmp_path):
    """A tf.Module's list of variables records no names that tell them apart (TF's full name ``Variable`` for
    each): the shared paths are a match by position, flagged, as the guide says."""
    class Stack(tf.Module):
        def __init__(self, n):
            self.layers = [tf.Variable(tf.random.normal([3])) for _ in range(n)]

    plan = warmstart.plan(written(Stack(2), tmp_path / "src" / "ckpt"), written(Stack(3), tmp_path / "new" / "ckpt"),
                          rules={"on_missing": "init"})
    assert [e.source for e in plan.positional] == ["model/layers/0", "model/layers/1"]


def trained(model: keras.Model) -> keras.Model:
    """One step of Adam: the optimizer's variables exist, and it tracks the model's trainable weights."""
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), verbose=0)
    return model


def with_bn() -> keras.Model:
    x = keras.Input((4,), name="x")
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(4, name="enc1")(x))
    return keras.Model(x, keras.layers.Dense(4, name="head")(h))


def test_a_template_saved_with_its_optimizer_gets_every_model_weight(tmp_path):
    """TF files the model's trainable weights of a checkpoint that holds the optimizer under
    ``optimizer/_trainable_variables/N``: they are still the model's weights, never excluded as optimizer state
    (only BatchNormalization's moving statistics, which the optimizer does not track, were copied)."""
    source = randomized(trained(with_bn()), 4)
    template = trained(with_bn())
    checkpoint = tf.train.Checkpoint(model=template, optimizer=template.optimizer)
    report = warmstart.transfer(str(tf.train.Checkpoint(model=source, optimizer=source.optimizer).write(
        str(tmp_path / "src" / "ckpt"))), checkpoint.write(str(tmp_path / "new" / "ckpt")), str(tmp_path / "out"))
    assert report.plan.counts["copy"] == len(source.weights) == 8
    assert all(e.source.startswith("model/") for e in report.plan.entries if e.action == "copy")
    got = read_back(with_bn(), tmp_path / "out")
    for g, w in zip(got.weights, source.weights):
        assert np.array_equal(np.asarray(g), np.asarray(w)), w.path
