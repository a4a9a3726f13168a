"""Example checkpoints written by TensorFlow itself, for the demo and the tests.

The scenario is the classic retraining change: a BERT-style pretrained checkpoint (``bert/...``,
Adam slots, ``global_step``) and a new model whose variables live under ``model/...``, whose
vocabulary grew, and whose classification head is new.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ._quiet import quiet_import

__all__ = ["ExampleSet", "write_bert_like_source", "write_renamed_template", "write_example_set", "EXAMPLE_RULES",
           "EXAMPLE_VERIFY"]

EXAMPLE_RULES = {
    "rename": [
        [r"model/(embeddings|encoder|pooler)/(.*)", r"bert/\1/\2"],
        [r"head/.*", None],
    ],
    "on_shape_mismatch": "skip",
    "min_coverage": 0.3,
}


# The demo's certificate: both graphs compute their pooled output from the same hidden states (a TF1 tensor of the
# source's graph against the target's); the encoder is copied, so they must agree.
EXAMPLE_VERIFY = {"pairs": [{"source": "pooled:0", "target": "pooled:0"}]}
SEQUENCE = 8  # the length of the example graphs' hidden_states


def _encoder_shapes(prefix: str, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        layer = f"{prefix}/encoder/layer_{i}"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            shapes[f"{layer}/{part}/kernel"] = (hidden, hidden)
            shapes[f"{layer}/{part}/bias"] = (hidden,)
        shapes[f"{layer}/attention/output/LayerNorm/gamma"] = (hidden,)
        shapes[f"{layer}/attention/output/LayerNorm/beta"] = (hidden,)
        shapes[f"{layer}/intermediate/dense/kernel"] = (hidden, 4 * hidden)
        shapes[f"{layer}/intermediate/dense/bias"] = (4 * hidden,)
        shapes[f"{layer}/output/dense/kernel"] = (4 * hidden, hidden)
        shapes[f"{layer}/output/dense/bias"] = (hidden,)
    shapes[f"{prefix}/pooler/dense/kernel"] = (hidden, hidden)
    shapes[f"{prefix}/pooler/dense/bias"] = (hidden,)
    return shapes


def _embedding_shapes(prefix: str, vocab: int, hidden: int, max_positions: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}/embeddings/word_embeddings": (vocab, hidden),
        f"{prefix}/embeddings/position_embeddings": (max_positions, hidden),
        f"{prefix}/embeddings/LayerNorm/gamma": (hidden,),
        f"{prefix}/embeddings/LayerNorm/beta": (hidden,),
    }


def save_tf1_checkpoint(values: dict[str, np.ndarray], prefix: str, global_step: int | None = None,
                        forward: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Write ``values`` as a TF1 name-based checkpoint with ``tf.compat.v1.train.Saver`` in a fresh graph
    (``forward``: builds the model's computation in it from its variables, by name).

    Returns the checkpoint prefix TF wrote (with ``-<global_step>`` when given); also writes the
    MetaGraph (``<prefix>.meta``) and the ``checkpoint`` state file.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = quiet_import("tensorflow")

    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=True)
                     for name, value in values.items()}
        if forward is not None:
            forward(variables)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, prefix, global_step=global_step)


def _bert_forward(prefix: str, hidden: int, layers: int) -> Callable[[dict[str, Any]], None]:
    """A BERT encoder's computation over ``prefix``'s variables: ``hidden_states`` [batch, SEQUENCE, hidden] (a
    placeholder) through the encoder layers to ``pooled`` (the pooler's tanh of the first position)."""

    def build(v: dict[str, Any]) -> None:
        import tensorflow as tf

        def dense(x, name):
            return tf.tensordot(x, v[f"{name}/kernel"], 1) + v[f"{name}/bias"]

        def norm(x, name):
            mean, variance = tf.nn.moments(x, [-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + 1e-12) * v[f"{name}/gamma"] + v[f"{name}/beta"]

        h = tf.compat.v1.placeholder(tf.float32, [None, SEQUENCE, hidden], name="hidden_states")
        for i in range(layers):
            layer = f"{prefix}/encoder/layer_{i}"
            q, k, w = (dense(h, f"{layer}/attention/self/{part}") for part in ("query", "key", "value"))
            attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / hidden ** 0.5)
            h = norm(h + dense(tf.matmul(attention, w), f"{layer}/attention/output/dense"),
                     f"{layer}/attention/output/LayerNorm")
            h = h + dense(tf.nn.gelu(dense(h, f"{layer}/intermediate/dense")), f"{layer}/output/dense")
        tf.tanh(dense(h[:, 0], f"{prefix}/pooler/dense"), name="pooled")

    return build


def _random(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {n: (rng.standard_normal(s) * 0.02).astype(np.float32) for n, s in shapes.items()}


def write_bert_like_source(directory: str | Path, vocab: int = 1000, hidden: int = 32, layers: int = 2,
                           seed: int = 0, global_step: int = 1000) -> str:
    """A pretrained BERT-style checkpoint with Adam slots (``adam_m``/``adam_v``) and ``global_step``."""
    rng = np.random.default_rng(seed)
    shapes = {**_embedding_shapes("bert", vocab, hidden, 64), **_encoder_shapes("bert", hidden, layers)}
    shapes["cls/predictions/output_bias"] = (vocab,)
    values = _random(shapes, rng)
    for name in list(values):
        values[f"{name}/adam_m"] = np.zeros_like(values[name])
        values[f"{name}/adam_v"] = np.full_like(values[name], 1e-4)
    values["global_step"] = np.int64(global_step)
    Path(directory).mkdir(parents=True, exist_ok=True)
    return save_tf1_checkpoint(values, str(Path(directory) / "model.ckpt"), global_step=global_step,
                               forward=_bert_forward("bert", hidden, layers))


def write_renamed_template(directory: str | Path, vocab: int = 1200, hidden: int = 32, layers: int = 2,
                           num_classes: int = 3, seed: int = 1) -> str:
    """The new model, freshly initialized: ``model/...`` names, a grown vocabulary, a new ``head/``."""
    rng = np.random.default_rng(seed)
    shapes = {**_embedding_shapes("model", vocab, hidden, 64), **_encoder_shapes("model", hidden, layers)}
    shapes["head/dense/kernel"] = (hidden, num_classes)
    shapes["head/dense/bias"] = (num_classes,)
    values = _random(shapes, rng)
    values["global_step"] = np.int64(0)
    Path(directory).mkdir(parents=True, exist_ok=True)
    return save_tf1_checkpoint(values, str(Path(directory) / "model.ckpt"), global_step=0,
                               forward=_bert_forward("model", hidden, layers))


@dataclass(frozen=True)
class ExampleSet:
    source: str  # directory of the pretrained checkpoint
    target: str  # directory of the new model's template checkpoint
    rules: str  # YAML rules file


def write_example_set(root: str | Path, hidden: int = 32, layers: int = 2) -> ExampleSet:
    """Write the example source, target template and rules under ``root``."""
    root = Path(root)
    write_bert_like_source(root / "pretrained", hidden=hidden, layers=layers)
    write_renamed_template(root / "new-model-init", hidden=hidden, layers=layers)
    rules = root / "rules.yaml"
    rules.write_text(yaml.safe_dump({**EXAMPLE_RULES, "verify": EXAMPLE_VERIFY}, sort_keys=False))
    return ExampleSet(str(root / "pretrained"), str(root / "new-model-init"), str(rules))


# --------------------------------------------------------------------------- a small model to retrain

def regression_data(n: int = 512, features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed nonlinear regression task (the same function for every seed; seeds change the samples)."""
    weights = np.random.default_rng(1234).standard_normal((features, 1)).astype(np.float32)
    x = np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)
    y = np.tanh(x @ weights) + 0.1 * np.sin(3 * x[:, :1])
    return x, y.astype(np.float32)


def build_regressor(features: int = 8, hidden: int = 32, seed: int = 0):
    """A small Keras MLP; layer names are stable across processes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = quiet_import("keras")

    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((features,), name="features")
    x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init, name="encoder")(inputs)
    x = keras.layers.Dense(hidden, activation="relu", kernel_initializer=init, name="encoder_2")(x)
    outputs = keras.layers.Dense(1, kernel_initializer=init, name="head")(x)
    return keras.Model(inputs, outputs, name="regressor")


def train_regressor(model, steps: int, seed: int = 0, learning_rate: float = 0.01) -> list[float]:
    """Train ``model`` with Adam for ``steps`` full-batch steps; returns the loss before each step and after the last."""
    keras = quiet_import("keras")

    x, y = regression_data(seed=seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, loss="mse")
    losses = [float(model.evaluate(x, y, verbose=0))]
    for _ in range(steps):
        losses.append(float(model.train_on_batch(x, y)))
    losses[-1] = float(model.evaluate(x, y, verbose=0))
    return losses


def write_pretrained_regressor(directory: str | Path, steps: int = 300, seed: int = 0) -> str:
    """Train the regressor and save it as a TF2 checkpoint with its optimizer (as a training job
    would); returns the checkpoint prefix."""
    tf = quiet_import("tensorflow")

    model = build_regressor(seed=seed)
    train_regressor(model, steps, seed=seed)
    Path(directory).mkdir(parents=True, exist_ok=True)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=model.optimizer),
                                         str(directory), max_to_keep=1)
    return manager.save()
