"""Writers of REAL TensorFlow checkpoints for tests (no mocks, no pytest needed).

Every builder writes into ``dirpath`` (created if missing) and returns a dict; all of them have

* ``"prefix"``: the checkpoint prefix (``<prefix>.index`` / ``<prefix>.data-00000-of-00001`` exist),
* ``"values"``: ``{checkpoint_key: numpy array}`` -- exactly what ``tf.train.load_checkpoint(prefix)
  .get_tensor(key)`` returns (same dtype and shape; strings are ``object`` arrays of ``bytes``;
  bfloat16 is ``ml_dtypes.bfloat16``). Partitioned variables appear under their full name with the
  full logical value,
* ``"dir"``: ``str(dirpath)``.

Values are deterministic (fixed seeds), so two calls with the same arguments write the same tensors.
TensorFlow is imported lazily inside the functions: importing this module is cheap.
TF1 builders each use their own ``tf.Graph()`` and ``tf.compat.v1.Session(graph=...)``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import struct
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "SUPPORTED_DTYPES",
    "tf1_checkpoint",
    "bert_like_checkpoint",
    "bert_like_values",
    "renamed_model_template",
    "partitioned_checkpoint",
    "saver_keyed_checkpoint",
    "tf2_checkpoint",
    "keras_model",
    "keras_checkpoint",
    "dtype_zoo_checkpoint",
    "dtype_zoo_values",
    "big_index_checkpoint",
    "write_state_file",
    "load_values",
    "assert_values_equal",
    "assert_checkpoint_matches",
    "count_index_data_blocks",
]

SUPPORTED_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "bool",
    "complex64",
    "string",
)

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


# --------------------------------------------------------------------------- helpers


def _tf():
    import tensorflow as tf

    return tf


def _np_dtype(name: str) -> np.dtype:
    if name == "string":
        return np.dtype(object)
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _as_value(value) -> np.ndarray:
    """Normalise to what TF reads back: str/bytes arrays become object arrays of bytes."""
    arr = np.asarray(value)
    if arr.dtype.kind in "SU" or (arr.dtype == object and arr.size and isinstance(arr.flat[0], (str, bytes))):
        out = np.empty(arr.shape, dtype=object)
        for idx, item in np.ndenumerate(arr):
            out[idx] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        return out
    if arr.dtype == object:  # empty object array: treat as string
        return arr
    return arr.copy()


def _tf_dtype(arr: np.ndarray):
    tf = _tf()
    if arr.dtype == object:
        return tf.string
    return tf.as_dtype(arr.dtype)


def _mkdir(dirpath) -> Path:
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    return d


_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum", "/Adagrad")


def _default_trainable(name: str, arr: np.ndarray) -> bool:
    if name == "global_step" or name.endswith(_OPTIMIZER_SUFFIXES):
        return False
    return arr.dtype.kind in "fc" or arr.dtype.name == "bfloat16"


def load_values(prefix) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint (except the TF2 object graph proto), via ``tf.train.load_checkpoint``."""
    tf = _tf()
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        k: reader.get_tensor(k) for k in sorted(reader.get_variable_to_shape_map()) if k != OBJECT_GRAPH_KEY
    }


def assert_values_equal(actual: np.ndarray, expected: np.ndarray, key: str = "?") -> None:
    """Exact equality of dtype, shape and contents (bytes compared elementwise for strings)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{key}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{key}: shape {actual.shape} != {expected.shape}"
    if expected.dtype == object:
        assert actual.tolist() == expected.tolist(), f"{key}: string contents differ"
    else:
        assert np.array_equal(actual, expected), f"{key}: values differ"


def assert_checkpoint_matches(info: dict, exact_keys: bool = True) -> None:
    """Read ``info["prefix"]`` back with TF and compare with ``info["values"]``."""
    got = load_values(info["prefix"])
    if exact_keys:
        assert set(got) == set(info["values"]), (
            f"keys differ: only in ckpt {sorted(set(got) - set(info['values']))}, "
            f"only expected {sorted(set(info['values']) - set(got))}"
        )
    for key, expected in info["values"].items():
        assert_values_equal(got[key], expected, key)


def write_state_file(dirpath, prefix_relative: str, all_prefixes: Iterable[str] | None = None) -> str:
    """Write a TF ``checkpoint`` state file naming ``prefix_relative`` (relative to ``dirpath``).

    Returns the path of the state file.
    """

    def q(s: str) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    d = _mkdir(dirpath)
    paths = list(all_prefixes) if all_prefixes is not None else [prefix_relative]
    if prefix_relative not in paths:
        paths.append(prefix_relative)
    lines = [f"model_checkpoint_path: {q(prefix_relative)}"]
    lines += [f"all_model_checkpoint_paths: {q(p)}" for p in paths]
    path = d / "checkpoint"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def count_index_data_blocks(index_path) -> int:
    """Number of data blocks of a TF bundle ``.index`` SSTable (entries of its index block)."""
    data = Path(index_path).read_bytes()

    def varint(buf: bytes, pos: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result, pos

    footer = data[-48:]
    pos = 0
    _, pos = varint(footer, pos)  # metaindex offset
    _, pos = varint(footer, pos)  # metaindex size
    off, pos = varint(footer, pos)
    size, pos = varint(footer, pos)
    block = data[off : off + size]
    (num_restarts,) = struct.unpack("<I", block[-4:])
    end = len(block) - 4 - 4 * num_restarts
    pos = count = 0
    while pos < end:
        _, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        value_len, pos = varint(block, pos)
        pos += non_shared + value_len
        count += 1
    return count


# --------------------------------------------------------------------------- TF1 (name based)


def tf1_checkpoint(
    dirpath,
    variables: dict[str, np.ndarray],
    step: int | None = None,
    *,
    basename: str = "model.ckpt",
    use_resource: bool = True,
    trainable: Callable[[str, np.ndarray], bool] | None = None,
) -> dict:
    """TF1 ``tf.compat.v1.train.Saver`` checkpoint of variables with exactly these names and values.

    Variables are created with ``tf.compat.v1.get_variable`` in a private graph and initialised from
    fed placeholders (so values are not embedded in the MetaGraph). Supported dtypes: see
    ``SUPPORTED_DTYPES`` (strings: arrays of ``bytes``/``str``, stored as TF ``string``).
    Prefix is ``dirpath/basename`` (``-step`` appended when ``step`` is given); Saver also writes
    ``<prefix>.meta`` and a ``checkpoint`` state file with relative paths.

    Returns ``{"prefix", "meta", "values", "dir", "state_file"}``.
    """
    tf = _tf()
    d = _mkdir(dirpath)
    values = {name: _as_value(v) for name, v in variables.items()}
    trainable = trainable or _default_trainable
    graph = tf.Graph()
    with graph.as_default():
        var_list = {}
        feeds = {}
        for name, arr in values.items():
            ph = tf.compat.v1.placeholder(_tf_dtype(arr), shape=arr.shape, name=f"init_value_{len(feeds)}")
            feeds[ph] = arr
            var_list[name] = tf.compat.v1.get_variable(
                name, initializer=ph, trainable=trainable(name, arr), use_resource=use_resource
            )
        if "global_step" in var_list:
            graph.add_to_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP, var_list["global_step"])
        saver = tf.compat.v1.train.Saver(var_list=var_list, save_relative_paths=True)
        init = tf.compat.v1.global_variables_initializer()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(init, feed_dict=feeds)
            prefix = saver.save(sess, str(d / basename), global_step=step)
    return {
        "prefix": prefix,
        "meta": prefix + ".meta",
        "values": values,
        "dir": str(d),
        "state_file": str(d / "checkpoint"),
    }


def _encoder_values(
    rng: np.random.Generator,
    scope: str,
    vocab: int,
    hidden: int,
    layers: int,
    max_position: int,
    *,
    template: bool,
) -> dict[str, np.ndarray]:
    """BERT-shaped variables under ``scope`` ("bert" or "model/...").

    ``template=False``: every tensor random (trained-looking, distinct from a fresh init);
    ``template=True``: a fresh init (truncated normal 0.02 weights, zero biases/betas, unit gammas).
    """

    def weight(*shape):
        return (np.clip(rng.standard_normal(shape), -2, 2) * 0.02).astype(np.float32)

    def bias(n):
        if template:
            return np.zeros((n,), np.float32)
        return (rng.standard_normal(n) * 0.01).astype(np.float32)

    def gamma(n):
        if template:
            return np.ones((n,), np.float32)
        return (1.0 + rng.standard_normal(n) * 0.01).astype(np.float32)

    v: dict[str, np.ndarray] = {}
    v[f"{scope}/embeddings/word_embeddings"] = weight(vocab, hidden)
    v[f"{scope}/embeddings/position_embeddings"] = weight(max_position, hidden)
    v[f"{scope}/embeddings/LayerNorm/gamma"] = gamma(hidden)
    v[f"{scope}/embeddings/LayerNorm/beta"] = bias(hidden)
    for i in range(layers):
        base = f"{scope}/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            v[f"{base}/attention/self/{part}/kernel"] = weight(hidden, hidden)
            v[f"{base}/attention/self/{part}/bias"] = bias(hidden)
        v[f"{base}/attention/output/dense/kernel"] = weight(hidden, hidden)
        v[f"{base}/attention/output/dense/bias"] = bias(hidden)
        v[f"{base}/output/dense/kernel"] = weight(hidden, hidden)
        v[f"{base}/output/dense/bias"] = bias(hidden)
    v[f"{scope}/pooler/dense/kernel"] = weight(hidden, hidden)
    v[f"{scope}/pooler/dense/bias"] = bias(hidden)
    return v


#: variables that ``bert_like_checkpoint`` also gives TF1 AdamOptimizer slots (``/Adam``, ``/Adam_1``)
BERT_TF1_ADAM_VARIABLES = ("bert/embeddings/word_embeddings", "bert/pooler/dense/kernel")


def bert_like_values(
    vocab: int = 100,
    hidden: int = 16,
    layers: int = 2,
    with_adam: bool = True,
    *,
    max_position: int = 32,
    seed: int = 0,
    global_step: int = 1000,
) -> dict[str, np.ndarray]:
    """The tensors ``bert_like_checkpoint`` writes (without writing anything)."""
    rng = np.random.default_rng(seed)
    v = _encoder_values(rng, "bert", vocab, hidden, layers, max_position, template=False)
    v["cls/predictions/output_bias"] = (rng.standard_normal(vocab) * 0.01).astype(np.float32)
    v["global_step"] = np.array(global_step, dtype=np.int64)
    if with_adam:
        trainable = [k for k in v if k != "global_step"]
        for name in trainable:
            shape = v[name].shape
            v[f"{name}/adam_m"] = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
            v[f"{name}/adam_v"] = (np.abs(rng.standard_normal(shape)) * 1e-5).astype(np.float32)
        for name in BERT_TF1_ADAM_VARIABLES:
            shape = v[name].shape
            v[f"{name}/Adam"] = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
            v[f"{name}/Adam_1"] = (np.abs(rng.standard_normal(shape)) * 1e-5).astype(np.float32)
    return v


def bert_like_checkpoint(
    dirpath,
    vocab: int = 100,
    hidden: int = 16,
    layers: int = 2,
    with_adam: bool = True,
    *,
    max_position: int = 32,
    seed: int = 0,
    global_step: int = 1000,
    step: int | None = None,
) -> dict:
    """TF1 name-based checkpoint shaped like Google's BERT (all tensors float32 except int64 global_step).

    Names: ``bert/embeddings/{word_embeddings [vocab,hidden], position_embeddings [max_position,hidden],
    LayerNorm/gamma, LayerNorm/beta}``, per layer ``bert/encoder/layer_{i}/attention/self/{query,key,value}/
    {kernel,bias}``, ``.../attention/output/dense/{kernel,bias}``, ``.../output/dense/{kernel,bias}``
    (all kernels [hidden, hidden]), ``bert/pooler/dense/{kernel,bias}``, ``cls/predictions/output_bias``
    [vocab], ``global_step`` (int64 scalar). ``with_adam``: ``<name>/adam_m`` and ``<name>/adam_v`` for
    every float variable, plus TF1-style ``<name>/Adam`` and ``<name>/Adam_1`` for
    ``BERT_TF1_ADAM_VARIABLES``.

    Returns ``{"prefix", "meta", "values", "dir", "state_file"}`` (like ``tf1_checkpoint``).
    """
    values = bert_like_values(
        vocab, hidden, layers, with_adam, max_position=max_position, seed=seed, global_step=global_step
    )
    return tf1_checkpoint(dirpath, values, step=step)


def renamed_model_template(
    dirpath,
    vocab: int = 120,
    hidden: int = 16,
    layers: int = 2,
    num_classes: int = 3,
    *,
    max_position: int = 32,
    seed: int = 1,
) -> dict:
    """TF1 template checkpoint of the "new model": freshly initialised (deterministic) values.

    Names: ``model/embeddings/{word_embeddings [vocab,hidden], position_embeddings, LayerNorm/gamma|beta}``,
    ``model/encoder/layer_{i}/...`` (same sub-structure as ``bert_like_checkpoint``),
    ``model/pooler/dense/kernel|bias``, ``head/dense/kernel`` [hidden, num_classes], ``head/dense/bias``,
    ``global_step`` (int64 0). Biases/betas are zeros, gammas ones, weights truncated-normal(0.02).

    Returns ``{"prefix", "meta", "values", "dir", "state_file"}`` (like ``tf1_checkpoint``).
    """
    rng = np.random.default_rng(seed)
    v = _encoder_values(rng, "model", vocab, hidden, layers, max_position, template=True)
    v["head/dense/kernel"] = (np.clip(rng.standard_normal((hidden, num_classes)), -2, 2) * 0.02).astype(
        np.float32
    )
    v["head/dense/bias"] = np.zeros((num_classes,), np.float32)
    v["global_step"] = np.array(0, dtype=np.int64)
    return tf1_checkpoint(dirpath, v)


def partitioned_checkpoint(dirpath) -> dict:
    """TF1 Saver checkpoint with partitioned ``emb`` [10, 4] float32 (3 parts on axis 0) + ``dense/kernel`` [4, 2].

    ``values["emb"]`` is the full logical [10, 4] value. ``"partitions"`` describes the parts:
    ``{"emb": [{"variable": "emb/part_0", "offset": [0, 0], "shape": [4, 4], "spec": "10 4 0,4:0,4"}, ...]}``.

    Returns ``{"prefix", "meta", "values", "dir", "state_file", "partitions"}``.
    """
    tf = _tf()
    d = _mkdir(dirpath)
    rng = np.random.default_rng(3)
    emb = (np.arange(40, dtype=np.float32).reshape(10, 4) + 0.5) * np.float32(-1.25)
    kernel = rng.standard_normal((4, 2)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        pv = tf.compat.v1.get_variable(
            "emb",
            shape=[10, 4],
            dtype=tf.float32,
            partitioner=tf.compat.v1.fixed_size_partitioner(3),
            initializer=tf.compat.v1.zeros_initializer(),
        )
        ph = tf.compat.v1.placeholder(tf.float32, shape=kernel.shape)
        kvar = tf.compat.v1.get_variable("dense/kernel", initializer=ph)
        parts, assigns = [], []
        for part in pv:
            info = part._get_save_slice_info()
            start = info.var_offset[0]
            n = part.shape[0]
            assigns.append(part.assign(emb[start : start + n]))
            parts.append(
                {
                    "variable": part.op.name,
                    "offset": list(info.var_offset),
                    "shape": list(info.var_shape),
                    "spec": info.spec,
                }
            )
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)  # all globals; groups the slices as "emb"
        init = tf.compat.v1.global_variables_initializer()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(init, feed_dict={ph: kernel})
            sess.run(assigns)
            prefix = saver.save(sess, str(d / "model.ckpt"))
        assert kvar.op.name == "dense/kernel"
    return {
        "prefix": prefix,
        "meta": prefix + ".meta",
        "values": {"emb": emb, "dense/kernel": kernel},
        "dir": str(d),
        "state_file": str(d / "checkpoint"),
        "partitions": {"emb": parts},
    }


#: The values of the Saver-keyed models of tests/test_saver_keys.py and test_saver_keyed_sources.py, by op name:
#: a source's (a, b and a partitioned p), a target's initial ones (c is not in the source: it keeps its own), and
#: what the target holds after a transfer.
SAVER_KEYED_SOURCE = {
    "a": np.array([1.0, 1.5], np.float32),
    "b": np.array([2.0, 2.5], np.float32),
    "p": np.arange(12, dtype=np.float32).reshape(6, 2) + 0.25,
}
SAVER_KEYED_INITIAL = {
    "a": np.array([10.0, 10.5], np.float32),
    "b": np.array([20.0, 20.5], np.float32),
    "c": np.array([30.0, 30.5], np.float32),
    "p": -np.arange(12, dtype=np.float32).reshape(6, 2),
}
SAVER_KEYED_EXPECTED = {**SAVER_KEYED_SOURCE, "c": SAVER_KEYED_INITIAL["c"]}


def saver_keyed_checkpoint(
    dirpath,
    initial: dict[str, np.ndarray],
    keys: dict[str, str] | None,
    *,
    partitioned: dict[str, int] | None = None,
    sharded: bool = False,
    use_resource: bool = True,
    save: bool = True,
    saver_version: int = 2,
) -> dict:
    """A TF1 graph whose own Saver stores variable ``name`` under ``keys[name]``
    (``tf.compat.v1.train.Saver({keys[name]: variable})``); ``keys=None``: a default ``Saver()`` (op names).

    One float variable per ``initial`` name, initialised from constants in the graph (its initializers need no
    feed); ``partitioned``: name -> number of parts on axis 0 (the partitioned variable saved whole under its key);
    ``sharded``: every other variable on a second CPU device and a sharded Saver (one ``SaveV2`` per device,
    merged); ``saver_version=1``: a V1 Saver (``SaveSlices``: then ``save`` must be False). ``save``: write a
    checkpoint of the initial values with its ``.meta`` (``saver.save``), else only the ``.meta``
    (``saver.export_meta_graph``).

    Returns ``{"prefix" (None when not saved), "meta", "values" (by checkpoint key), "dir"}``.
    """
    tf = _tf()
    d = _mkdir(dirpath)
    graph = tf.Graph()
    with graph.as_default():
        variables = {}
        for i, (name, value) in enumerate(initial.items()):
            with tf.device(f"/cpu:{i % 2 if sharded else 0}"):
                if partitioned and name in partitioned:
                    variables[name] = tf.compat.v1.get_variable(
                        name, shape=value.shape, dtype=tf.as_dtype(value.dtype), initializer=_slices_of(tf, value),
                        partitioner=tf.compat.v1.fixed_size_partitioner(partitioned[name]), use_resource=use_resource)
                else:
                    variables[name] = tf.compat.v1.get_variable(name, initializer=tf.constant(value),
                                                                use_resource=use_resource)
        var_list = None if keys is None else {keys[name]: v for name, v in variables.items()}
        version = tf.compat.v1.train.SaverDef.V1 if saver_version == 1 else tf.compat.v1.train.SaverDef.V2
        saver = tf.compat.v1.train.Saver(var_list, sharded=sharded, save_relative_paths=True, write_version=version)
        init = tf.compat.v1.global_variables_initializer()
        if not save:
            meta = str(d / "model.meta")
            saver.export_meta_graph(meta)
            return {"prefix": None, "meta": meta, "values": {}, "dir": str(d)}
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            sess.run(init)
            prefix = saver.save(sess, str(d / "model.ckpt"))
    key = {name: name if keys is None else keys[name] for name in initial}
    return {"prefix": prefix, "meta": prefix + ".meta", "values": {key[n]: v for n, v in initial.items()},
            "dir": str(d)}


def _slices_of(tf, value: np.ndarray):
    """An initializer giving each part of a partitioned variable its slice of ``value``."""

    def init(shape, dtype=None, partition_info=None):
        offset = partition_info.var_offset if partition_info is not None else [0] * len(shape)
        return tf.constant(value[tuple(slice(o, o + n) for o, n in zip(offset, shape))], dtype=dtype)

    return init


def _dtype_zoo_values() -> dict[str, np.ndarray]:
    import ml_dtypes

    bf16 = ml_dtypes.bfloat16
    return {
        "v_float32": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5) * np.float32(0.37),
        "v_float64": np.array([1e300, -1e-300, np.pi], dtype=np.float64),
        "v_float16": np.array([[65504.0, -0.5], [6e-8, np.inf]], dtype=np.float16),
        "v_bfloat16": np.array([1.5, -3.0, 3.3895e38, 0.0078125], dtype=bf16),
        "v_int8": np.array([[-128, 127], [0, -1]], dtype=np.int8),
        "v_int16": np.array([-32768, 32767, 1], dtype=np.int16),
        "v_int32": np.array(-123456789, dtype=np.int32),  # the scalar
        "v_int64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        "v_uint8": np.array([[0, 1, 2], [127, 128, 255]], dtype=np.uint8),
        "v_uint16": np.array([0, 65535], dtype=np.uint16),
        "v_bool": np.array([[True, False], [False, True]], dtype=np.bool_),
        "v_complex64": np.array([1 + 2j, -3.5 - 0.25j], dtype=np.complex64),
        "v_string": _as_value([b"", b"hello", b"\x00\xffbinary", "\u00fcn\u00efcode".encode("utf-8")]),
        "v_empty": np.zeros((0, 3), dtype=np.float32),
    }


def dtype_zoo_values() -> dict[str, np.ndarray]:
    """The tensors ``dtype_zoo_checkpoint`` writes."""
    return _dtype_zoo_values()


def dtype_zoo_checkpoint(dirpath) -> dict:
    """TF1 checkpoint with one variable per supported dtype: ``v_<dtype>`` (``v_float32`` [2,3,4],
    ``v_int32`` scalar, ``v_string`` [4] incl. empty/binary/UTF-8, ...) plus ``v_empty`` float32 [0, 3].

    Returns ``{"prefix", "meta", "values", "dir", "state_file"}``.
    """
    return tf1_checkpoint(dirpath, _dtype_zoo_values())


def big_index_checkpoint(dirpath, n: int = 3000, *, name_pad: int = 0) -> dict:
    """Name-based checkpoint with ``n`` tiny float32 [2] variables ``block_{i:05d}/w`` (value ``[i, -i]``).

    Written with one eager ``tf.raw_ops.SaveV2`` (the op ``Saver`` runs; same file format, no MetaGraph,
    ~0.2 s instead of ~10 s through a 3000-variable graph). ``name_pad > 0`` inserts a
    ``"p" * name_pad`` path component (``block_00000/ppp.../w``) to make the index bigger.

    TF's bundle writer uses 256 KiB SSTable blocks with a restart point every 16 keys: the default
    (n=3000) gives a ~76 KB index = ONE data block with ~190 restart points; ``name_pad=300`` gives
    ~1 MB = 4 data blocks; n=30000 ~780 KB = 3 blocks.

    Returns ``{"prefix", "meta": None, "values", "dir", "state_file", "index_size", "data_blocks"}``.
    """
    tf = _tf()
    d = _mkdir(dirpath)
    mid = ("p" * name_pad + "/") if name_pad else ""
    names = [f"block_{i:05d}/{mid}w" for i in range(n)]
    values = {name: np.array([i, -i], dtype=np.float32) for i, name in enumerate(names)}
    prefix = str(d / "model.ckpt")
    with tf.device("/cpu:0"):
        tf.raw_ops.SaveV2(
            prefix=prefix,
            tensor_names=names,
            shape_and_slices=[""] * n,
            tensors=[tf.constant(values[name]) for name in names],
        )
    state = write_state_file(d, "model.ckpt")
    index = prefix + ".index"
    size = os.path.getsize(index)
    if n >= 3000 or name_pad:
        assert size > 64 * 1024, f"index only {size} bytes"
    return {
        "prefix": prefix,
        "meta": None,
        "values": values,
        "dir": str(d),
        "state_file": state,
        "index_size": size,
        "data_blocks": count_index_data_blocks(index),
    }


# --------------------------------------------------------------------------- TF2 (object based)


def _tf2_module(seed: int):
    tf = _tf()
    rng = np.random.default_rng(seed)

    class Dense(tf.Module):
        def __init__(self, n_in, n_out, name=None):
            super().__init__(name=name)
            self.w = tf.Variable(rng.standard_normal((n_in, n_out)).astype(np.float32), name="w")
            self.b = tf.Variable(rng.standard_normal((n_out,)).astype(np.float32), name="b")

        def __call__(self, x):
            return tf.matmul(x, self.w) + self.b

    class Encoder(tf.Module):
        def __init__(self):
            super().__init__(name="encoder")
            self.layers = [Dense(3, 3, name="l0"), Dense(3, 3, name="l1")]

        def __call__(self, x):
            for layer in self.layers:
                x = tf.nn.relu(layer(x))
            return x

    class Model(tf.Module):
        def __init__(self):
            super().__init__(name="model")
            self.encoder = Encoder()
            self.dense = Dense(3, 2, name="dense")
            self.extra = [
                tf.Variable(rng.standard_normal((2,)).astype(np.float64), name="extra0"),
                tf.Variable(np.int64(7), name="extra1", trainable=False),
            ]
            self.scale = tf.Variable(np.float32(1.5), name="scale")

        def __call__(self, x):
            return self.dense(self.encoder(x)) * self.scale

    return Model()


def tf2_checkpoint(dirpath, with_optimizer: bool = False, *, optimizer: str = "v1", seed: int = 0) -> dict:
    """``tf.train.Checkpoint(model=module[, optimizer=opt]).save(dirpath/"ckpt")`` -> prefix ``dirpath/ckpt-1``.

    The module: ``model/encoder/layers/{0,1}/{w,b}``, ``model/dense/{w [3,2], b [2]}`` (float32),
    ``model/extra/0`` (float64 [2]), ``model/extra/1`` (int64 scalar), ``model/scale`` (float32 scalar);
    keys look like ``model/dense/w/.ATTRIBUTES/VARIABLE_VALUE``. Also ``save_counter/.ATTRIBUTES/VARIABLE_VALUE``.

    ``with_optimizer``: one Adam step first. ``optimizer="v1"`` (``tf.compat.v1.train.AdamOptimizer``,
    eager) writes real slot variables ``model/dense/w/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE``
    (and ``v``) plus ``optimizer/beta1_power``...; ``optimizer="keras"`` (Keras 3 Adam) writes
    ``optimizer/_variables/<n>/...``, ``optimizer/_iterations/...``, ``optimizer/_learning_rate/...``.

    ``values`` is read back with ``tf.train.load_checkpoint`` (everything but ``_CHECKPOINTABLE_OBJECT_GRAPH``).
    Returns ``{"prefix", "values", "dir", "state_file", "variable_keys"}`` where ``variable_keys`` maps
    the module attribute path (``"dense/w"``, ``"encoder/layers/0/w"``, ``"extra/1"``) to its key.
    """
    tf = _tf()
    d = _mkdir(dirpath)
    model = _tf2_module(seed)
    variable_keys = {"scale": "model/scale/.ATTRIBUTES/VARIABLE_VALUE"}
    for attr in ("dense", "encoder/layers/0", "encoder/layers/1"):
        for v in ("w", "b"):
            variable_keys[f"{attr}/{v}"] = f"model/{attr}/{v}/.ATTRIBUTES/VARIABLE_VALUE"
    for i in range(2):
        variable_keys[f"extra/{i}"] = f"model/extra/{i}/.ATTRIBUTES/VARIABLE_VALUE"
    objects = {"model": model}
    if with_optimizer:
        if optimizer == "v1":
            opt = tf.compat.v1.train.AdamOptimizer(learning_rate=0.1)
        elif optimizer == "keras":
            opt = tf.keras.optimizers.Adam(learning_rate=0.1)
        else:
            raise ValueError(f"optimizer must be 'v1' or 'keras', not {optimizer!r}")
        x = tf.constant(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) ** 2) + tf.cast(tf.reduce_sum(model.extra[0] ** 2), tf.float32)
        train_vars = list(model.trainable_variables)
        grads = tape.gradient(loss, train_vars)
        opt.apply_gradients(zip(grads, train_vars))
        objects["optimizer"] = opt
    ckpt = tf.train.Checkpoint(**objects)
    prefix = ckpt.save(str(d / "ckpt"))
    return {
        "prefix": prefix,
        "values": load_values(prefix),
        "dir": str(d),
        "state_file": str(d / "checkpoint"),
        "variable_keys": variable_keys,
    }


def keras_model(kind: str = "functional", hidden: int = 8, seed: int = 0):
    """A built Keras 3 model: Input(4,) -> Dense(hidden, name="enc") -> Dense(2, name="head").

    Deterministic: seeded initializers (no global seed is touched); biases are non-zero.
    """
    tf = _tf()
    keras = tf.keras

    def kinit(s):
        return keras.initializers.GlorotUniform(seed=s)

    def binit(s):
        return keras.initializers.RandomNormal(stddev=0.1, seed=s)

    enc = keras.layers.Dense(hidden, name="enc", kernel_initializer=kinit(seed), bias_initializer=binit(seed + 1))
    head = keras.layers.Dense(2, name="head", kernel_initializer=kinit(seed + 2), bias_initializer=binit(seed + 3))
    if kind == "functional":
        inputs = keras.Input(shape=(4,), name="x")
        return keras.Model(inputs, head(enc(inputs)))
    if kind == "sequential":
        return keras.Sequential([keras.Input(shape=(4,)), enc, head])
    raise ValueError(f"kind must be 'functional' or 'sequential', not {kind!r}")


def _object_keys(ckpt, objects: dict) -> dict[str, str | None]:
    """Checkpoint key TF gives each object (label -> key), via TF's own object-graph traversal."""
    try:
        from tensorflow.python.checkpoint import graph_view
        from tensorflow.python.trackable import trackable_utils

        _, paths = graph_view.ObjectGraphView(ckpt).breadth_first_traversal()
    except Exception:  # private API moved: keys stay unknown, values are still complete
        return {label: None for label in objects}
    out = {}
    for label, obj in objects.items():
        path = paths.get(obj)
        out[label] = (
            trackable_utils.checkpoint_key(trackable_utils.object_path_to_string(path), "VARIABLE_VALUE")
            if path
            else None
        )
    return out


def _keras_optimizer_labels(opt, labelled: dict) -> dict:
    """Stable labels for Keras 3 Adam variables: ``iteration``, ``learning_rate``,
    ``<layer>/<weight>/momentum`` and ``.../velocity`` (Keras' own variable paths carry global
    name counters such as ``adam_2/sequential_1_enc_kernel_momentum``)."""
    by_id = {id(w): label for label, w in labelled.items()}
    out = {"iteration": opt.iterations, "learning_rate": opt._learning_rate}
    try:
        for var, m, v in zip(opt._trainable_variables, opt._momentums, opt._velocities):
            label = by_id.get(id(var), var.path)
            out[f"{label}/momentum"] = m
            out[f"{label}/velocity"] = v
    except AttributeError:  # Keras internals moved: fall back to Keras' own paths
        out = {v.path: v for v in opt.variables}
    return out


def keras_checkpoint(
    dirpath, kind: str = "functional", with_optimizer: bool = False, seed: int = 0, *, hidden: int = 8
) -> dict:
    """Keras 3 model saved two ways: ``tf.train.Checkpoint(model=m[, optimizer=opt]).save(dirpath/"ckpt")``
    (prefix ``dirpath/ckpt-1``) and ``m.save(dirpath/"model.keras")``.

    ``with_optimizer``: compile with Adam(1e-3) + mse and fit one step on zeros first, so the
    optimizer variables exist.

    NOTE the key names Keras 3 gets (TF names each variable by its SHORTEST object path):
    functional without optimizer ``model/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE`` (Dense's
    kernel attribute is ``_kernel``, bias is ``bias``); sequential ``model/_functional/_operations/1/...``;
    WITH optimizer the model weights are saved as ``optimizer/_trainable_variables/<n>/...`` and
    the Adam moments as ``optimizer/_variables/<2..>/...``. Use ``weight_keys``.

    Returns ``{"prefix", "keras", "values", "dir", "state_file", "weights", "weight_keys",
    "optimizer_keys"}``: ``weights`` = ``{"enc/kernel": array, ...}`` (layer/weight name),
    ``weight_keys`` = ``{"enc/kernel": checkpoint key}``, ``optimizer_keys`` = ``{"iteration" |
    "learning_rate" | "enc/kernel/momentum" | "enc/kernel/velocity" ...: checkpoint key}`` (empty without
    optimizer).
    """
    tf = _tf()
    d = _mkdir(dirpath)
    model = keras_model(kind, hidden=hidden, seed=seed)
    objects = {"model": model}
    opt = None
    if with_optimizer:
        opt = tf.keras.optimizers.Adam(learning_rate=1e-3)
        model.compile(optimizer=opt, loss="mse")
        model.fit(np.zeros((2, 4), np.float32), np.zeros((2, 2), np.float32), epochs=1, batch_size=2, verbose=0)
        objects["optimizer"] = opt
    ckpt = tf.train.Checkpoint(**objects)
    prefix = ckpt.save(str(d / "ckpt"))
    keras_path = str(d / "model.keras")
    model.save(keras_path)
    labelled = {}
    for layer in model.layers:
        for w in layer.weights:
            labelled[f"{layer.name}/{w.name}"] = w
    weight_keys = _object_keys(ckpt, labelled)
    optimizer_keys = _object_keys(ckpt, _keras_optimizer_labels(opt, labelled)) if opt is not None else {}
    return {
        "prefix": prefix,
        "keras": keras_path,
        "values": load_values(prefix),
        "dir": str(d),
        "state_file": str(d / "checkpoint"),
        "weights": {label: np.array(w.numpy()) for label, w in labelled.items()},
        "weight_keys": weight_keys,
        "optimizer_keys": optimizer_keys,
    }


def restored_as_users_do(meta: str, out, trainable_only: bool = False) -> dict[str, np.ndarray]:
    """The output restored the usual way: the Saver ``import_meta_graph`` returns (the MetaGraph's own), into a
    fresh graph; full values by variable (a partitioned variable's parts put together by their public
    ``VariableDef``). ``trainable_only``: the trainable variables' (what a ``Saver(trainable_variables())``
    restores; the others stay uninitialised)."""
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, tf.train.latest_checkpoint(str(out)))
            variables = (tf.compat.v1.trainable_variables if trainable_only else tf.compat.v1.global_variables)()
            values, parts = {}, {}
            for v, value in zip(variables, sess.run(variables)):
                info = v.to_proto().save_slice_info_def
                if info.full_name:
                    parts.setdefault(info.full_name, (tuple(info.full_shape), []))[1].append((info.var_offset, value))
                else:
                    values[v.op.name] = value
    for name, (shape, pieces) in parts.items():
        full = np.empty(shape, pieces[0][1].dtype)
        for offset, value in pieces:
            full[tuple(slice(o, o + n) for o, n in zip(offset, value.shape))] = value
        values[name] = full
    return values


def assert_exact(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), (name, got[name], value)
