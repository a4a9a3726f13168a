"""Keras models the naming tests share (also as ``py:keras_models:...`` builders).

``functional``: a functional model of built-in layers, every layer named by the user. ``bert_classifier``:
a BERT-like classifier in keras-hub's shape (keras-hub itself cannot be installed beside TensorFlow 2.21
here: it pulls another TensorFlow): a registered functional-model subclass ``BertBackbone`` whose name
Keras generates (``bert_backbone``), holding user-named layers and custom ``TransformerEncoder`` layers
that build their named sub-layers in ``build``, nested in a classifier model.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

RNG = np.random.default_rng(21)
SEQUENCE = 6


def randomized(model: keras.Model, seed: int | None = None) -> keras.Model:
    """Every weight set to random values (no weight keeps an initial value a copy could be mistaken for)."""
    rng = RNG if seed is None else np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))
    return model


def functional() -> keras.Model:
    """Built-in layers only, each named by the user: Embedding, Dense, LayerNormalization, BatchNormalization,
    MultiHeadAttention, LSTM."""
    ids = keras.Input((SEQUENCE,), dtype="int32", name="ids")
    h = keras.layers.Embedding(40, 8, name="words")(ids)
    h = keras.layers.LayerNormalization(name="words_norm")(h)
    a = keras.layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    h = keras.layers.BatchNormalization(name="attention_bn")(h + a)
    h = keras.layers.LSTM(6, name="recurrent")(h)
    h = keras.layers.Dense(5, activation="relu", name="hidden")(h)
    return keras.Model(ids, keras.layers.Dense(3, name="head")(h), name="tagger")


@keras.saving.register_keras_serializable(package="warmstart_tests")
class TransformerEncoder(keras.layers.Layer):
    """keras-hub's ``TransformerEncoder`` in small: named sub-layers created in ``build``."""

    def __init__(self, intermediate_dim: int = 16, num_heads: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim, self.num_heads = intermediate_dim, num_heads

    def build(self, input_shape):
        hidden = input_shape[-1]
        self._self_attention_layer = keras.layers.MultiHeadAttention(
            self.num_heads, hidden // self.num_heads, name="self_attention")
        self._self_attention_layer.build(input_shape, input_shape)
        self._self_attention_layer_norm = keras.layers.LayerNormalization(name="self_attention_layer_norm")
        self._self_attention_layer_norm.build(input_shape)
        self._feedforward_intermediate_dense = keras.layers.Dense(
            self.intermediate_dim, activation="gelu", name="feedforward_intermediate_dense")
        self._feedforward_intermediate_dense.build(input_shape)
        self._feedforward_output_dense = keras.layers.Dense(hidden, name="feedforward_output_dense")
        self._feedforward_output_dense.build((*input_shape[:-1], self.intermediate_dim))
        self._feedforward_layer_norm = keras.layers.LayerNormalization(name="feedforward_layer_norm")
        self._feedforward_layer_norm.build(input_shape)
        self.built = True

    def call(self, x):
        x = self._self_attention_layer_norm(x + self._self_attention_layer(x, x))
        f = self._feedforward_output_dense(self._feedforward_intermediate_dense(x))
        return self._feedforward_layer_norm(x + f)

    def get_config(self):
        return {**super().get_config(), "intermediate_dim": self.intermediate_dim, "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="warmstart_tests")
class BertBackbone(keras.Model):
    """keras-hub's ``BertBackbone`` in small: a functional model whose configuration is its arguments."""

    def __init__(self, vocabulary_size: int = 50, hidden_dim: int = 8, num_layers: int = 2, **kwargs):
        ids = keras.Input((SEQUENCE,), dtype="int32", name="token_ids")
        x = keras.layers.Embedding(vocabulary_size, hidden_dim, name="token_embedding")(ids)
        x = x + keras.layers.Embedding(SEQUENCE, hidden_dim, name="position_embedding")(
            keras.ops.arange(SEQUENCE, dtype="int32")[None, :])
        x = keras.layers.LayerNormalization(name="embeddings_layer_norm")(x)
        for i in range(num_layers):
            x = TransformerEncoder(name=f"transformer_layer_{i}")(x)
        pooled = keras.layers.Dense(hidden_dim, activation="tanh", name="pooled_dense")(x[:, 0, :])
        super().__init__(inputs=ids, outputs={"sequence_output": x, "pooled_output": pooled}, **kwargs)
        self.vocabulary_size, self.hidden_dim, self.num_layers = vocabulary_size, hidden_dim, num_layers

    def get_config(self):
        return {"vocabulary_size": self.vocabulary_size, "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def bert_classifier(num_classes: int = 3) -> keras.Model:
    """A classifier over a nested ``BertBackbone`` (named ``bert_backbone``, ``bert_backbone_1``... by Keras)."""
    backbone = BertBackbone()
    pooled = backbone(backbone.input)["pooled_output"]
    logits = keras.layers.Dense(num_classes, name="logits")(keras.layers.Dropout(0.1, name="output_dropout")(pooled))
    return keras.Model(backbone.input, logits)


def nested() -> keras.Model:
    """A plain Functional model nested in another (built-in layers, user names), read without Keras."""
    inner_in = keras.Input((8,), name="features")
    h = keras.layers.Dense(8, name="encoder_dense")(inner_in)
    encoder = keras.Model(inner_in, keras.layers.LayerNormalization(name="encoder_norm")(h), name="encoder")
    x = keras.Input((8,), name="x")
    return keras.Model(x, keras.layers.Dense(2, name="head")(encoder(x)))
