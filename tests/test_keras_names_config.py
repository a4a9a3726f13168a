"""The table of Keras' built-in layers' variables (``warmstart/tables/keras_config.py``) against Keras itself.

A ``.keras`` file of built-in layers is named from its ``config.json`` without Keras; a live model by Keras'
own saving walk. For every class and configuration the table describes, both must give the same names, and
the live walk's structure keys must be the paths Keras writes into a weights file.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402

import warmstart  # noqa: E402
from warmstart.tables import table_from_trackable  # noqa: E402
from warmstart.tables.keras_config import variables_from_config  # noqa: E402

L = keras.layers


def _sequence_zoo() -> keras.Model:
    x = keras.Input((6, 4), name="x")
    h = L.LSTM(4, return_sequences=True, name="lstm_named")(x)
    h = L.GRU(4, return_sequences=True, use_bias=False, name="gru_named")(h)
    h = L.SimpleRNN(4, return_sequences=True, name="rnn_named")(h)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True, name="inner"), name="bi")(h)
    h = L.TimeDistributed(L.Dense(4, name="per_step"), name="td")(h)
    h = L.MultiHeadAttention(2, 2, use_bias=False, name="mha_nobias")(h, h)
    h = L.Conv1D(4, 2, name="c1")(h)
    h = L.Conv1DTranspose(4, 2, use_bias=False, name="c1t")(h)
    h = L.SeparableConv1D(4, 2, name="sc1")(h)
    h = L.DepthwiseConv1D(2, name="dw1")(h)
    h = L.GroupNormalization(groups=2, center=False, name="gn")(h)
    h = L.LayerNormalization(scale=False, name="ln_noscale")(h)
    h = L.PReLU(name="prelu")(h)
    h = L.Flatten()(h)
    h = L.BatchNormalization(scale=False, name="bn_noscale")(h)
    h = L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c", name="einsum")(h)
    h = L.Dense(3, use_bias=False, name="nobias")(h)
    return keras.Model(x, h)


def _image_zoo() -> keras.Model:
    x = keras.Input((8, 8, 3), name="image")
    n = L.Normalization(name="norm")
    n.adapt(keras.random.normal((4, 8, 8, 3)))
    h = n(x)
    h = L.Conv2D(4, 3, name="c2")(h)
    h = L.Conv2DTranspose(4, 3, name="c2t")(h)
    h = L.SeparableConv2D(4, 3, name="sc2")(h)
    h = L.DepthwiseConv2D(3, name="dw2")(h)
    h = L.BatchNormalization(center=False, name="bn")(h)
    h = L.Conv3D(2, 1, name="c3")(L.Reshape((2, 2, 4, 4))(h))
    h = L.Conv3DTranspose(2, 1, name="c3t")(h)
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling3D()(h)))


def _embedding_zoo() -> keras.Model:
    ids = keras.Input((5,), dtype="int32")
    h = L.Embedding(20, 4, name="emb")(ids)
    inner_in = keras.Input((5, 4))
    inner = keras.Sequential([inner_in, L.Dense(4, name="block_dense"), L.LayerNormalization(rms_scaling=True)],
                             name="block")
    return keras.Model(ids, L.Dense(2)(L.GlobalMaxPooling1D()(inner(h))))


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning")
@pytest.mark.parametrize("make", [_sequence_zoo, _image_zoo, _embedding_zoo])
def test_names_from_a_configuration_are_the_names_keras_gives(make, tmp_path):
    model = make()
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    import json
    import zipfile

    assert variables_from_config(json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))) is not None
    live = table_from_trackable(model)
    from_config = warmstart.read_table(str(tmp_path / "m.keras"))
    fields = ("name", "weights_path", "structure", "anchor", "generated", "shape", "dtype")
    want = sorted(tuple(getattr(v, f) for f in fields) for v in live.variables)
    assert sorted(tuple(getattr(v, f) for f in fields) for v in from_config.variables) == want
    with h5py.File(tmp_path / "m.weights.h5") as f:
        written = []
        f.visititems(lambda path, obj: written.append(path) if isinstance(obj, h5py.Dataset) else None)
    assert sorted(v.structure for v in live.variables) == sorted(written)
    bare = warmstart.read_table(str(tmp_path / "m.weights.h5"))
    by_structure = {v.structure: v for v in live.variables}
    for v in bare.variables:  # where the class tells what vars/N is, the guess is right
        assert v.weights_path == by_structure[v.key].weights_path
        assert not v.guessed or v.guessed == (by_structure[v.key].name,), v


def test_a_layer_outside_the_table_is_named_by_keras(tmp_path):
    """A custom layer: the configuration is not read by the table; Keras builds the model (no weight) to say."""
    from keras_models import bert_classifier

    model = bert_classifier()
    model.save(tmp_path / "m.keras")
    import json
    import zipfile

    assert variables_from_config(json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))) is None
    assert set(warmstart.read_table(str(tmp_path / "m.keras"))) == {v.path for v in model.weights}
