"""How Keras weights files are read: ranged reads of contiguous tensors, h5py for the rest, sharded
``.weights.json`` files, and damaged or hostile files (a fuzz over files Keras wrote).

Every file here is written by Keras itself except where a test needs a layout Keras does not write
(chunked, compressed or big-endian datasets), which h5py writes in Keras' layout.
"""

from __future__ import annotations

import json
import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import warmstart  # noqa: E402
from warmstart.formats import open_source  # noqa: E402

RNG = np.random.default_rng(5)


def mlp(widths=(300, 300, 300), name_prefix="d") -> keras.Model:
    inputs = keras.Input((8,), name="x")
    h = inputs
    for i, w in enumerate(widths):
        h = keras.layers.Dense(w, name=f"{name_prefix}{i + 1}")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(h))


def randomized(model: keras.Model) -> keras.Model:
    for v in model.weights:
        v.assign(RNG.normal(size=v.shape).astype(v.dtype))
    return model


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharded")
    model = randomized(mlp())
    model.save_weights(d / "model.weights.json", max_shard_size=0.0004)  # GB: 3 shards of these layers
    model.save_weights(d / "model.weights.h5")
    return d, model


def test_every_tensor_keras_writes_is_read_by_its_byte_range(sharded):
    d, model = sharded
    reader = open_source(str(d / "model.weights.h5"))
    assert all(r.offset is not None for r in reader.records.values())
    with h5py.File(d / "model.weights.h5") as f:
        for key, record in reader.records.items():
            np.testing.assert_array_equal(reader.read(key), f[key][()], err_msg=key)
            assert f[key].id.get_offset() == record.offset


def test_a_sharded_weights_file_is_one_source_named_by_layer_names(sharded, tmp_path):
    d, model = sharded
    index = json.loads((d / "model.weights.json").read_text())
    shards = sorted({n for names in index["weight_map"].values() for n in names})
    assert len(shards) >= 2, "the fixture must really be sharded"
    reader = open_source(str(d / "model.weights.json"))
    assert {r.shard for r in reader.records.values()} == set(range(len(shards)))
    whole = warmstart.read_table(str(d / "model.weights.h5"))
    table = warmstart.read_table(str(d / "model.weights.json"))
    # a layer's name is recorded only in the shard that first holds its group: names come from any shard
    assert [(v.name, v.shape) for v in table.variables] == [(v.name, v.shape) for v in whole.variables]
    assert not any(v.positional for v in table.variables)
    target = mlp()
    report = warmstart.transfer(str(d / "model.weights.json"), target, str(tmp_path / "out"))
    assert report.plan.ok and report.plan.counts["copy"] == len(model.weights)
    for got, want in zip(target.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_sharded_source_streams_into_a_keras_target_that_keras_loads(sharded, tmp_path):
    d, model = sharded
    mlp().save(tmp_path / "target.keras")
    warmstart.transfer(str(d / "model.weights.json"), str(tmp_path / "target.keras"), str(tmp_path / "out"))
    loaded = mlp()
    loaded.load_weights(tmp_path / "out" / "model.weights.h5")
    for got, want in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_shard_index_cannot_name_files_outside_its_directory(sharded, tmp_path):
    d, _ = sharded
    (tmp_path / "secret.weights.h5").write_bytes((d / "model.weights.h5").read_bytes())
    (tmp_path / "in").mkdir()
    for bad in ("../secret.weights.h5", "/etc/passwd", "sub/x.weights.h5"):
        (tmp_path / "in" / "m.weights.json").write_text(json.dumps({"weight_map": {"/layers/dense/vars": [bad]}}))
        with pytest.raises(warmstart.CorruptCheckpointError, match="not a .weights.h5 file beside it"):
            open_source(str(tmp_path / "in" / "m.weights.json"))
    (tmp_path / "in" / "m.weights.json").write_text('{"weight_map": [1, 2]}')
    with pytest.raises(warmstart.CorruptCheckpointError, match="not a Keras shard index"):
        open_source(str(tmp_path / "in" / "m.weights.json"))
    (tmp_path / "in" / "gone.weights.json").write_text(
        json.dumps({"weight_map": {"/layers/dense/vars": ["gone.weights.h5"]}}))
    with pytest.raises(warmstart.InputNotFoundError):
        open_source(str(tmp_path / "in" / "gone.weights.json"))


def test_a_sharded_file_is_no_template_to_write_into(sharded, tmp_path):
    d, _ = sharded
    with pytest.raises(warmstart.UsageError, match="sharded Keras weights file"):
        warmstart.transfer(str(d / "model.weights.h5"), str(d / "model.weights.json"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_layouts_keras_does_not_write_are_read_through_h5py(sharded, tmp_path):
    """Chunked + compressed, and big-endian datasets in Keras' layout: no byte range, same values."""
    d, _ = sharded
    values = {}
    with h5py.File(d / "model.weights.h5") as src, h5py.File(tmp_path / "odd.weights.h5", "w") as out:
        def copy(path, obj):
            if isinstance(obj, h5py.Group):
                group = out.require_group(path)
                group.attrs.update(obj.attrs)
            else:
                values[path] = obj[()]
                if len(values) % 2:
                    out.create_dataset(path, data=obj[()], chunks=True, compression="gzip")
                else:
                    out.create_dataset(path, data=obj[()].astype(obj.dtype.newbyteorder(">")))
        src.visititems(copy)
    reader = open_source(str(tmp_path / "odd.weights.h5"))
    offsets = {k: r.offset for k, r in reader.records.items()}
    assert None in offsets.values() and any(v is not None for v in offsets.values())
    for key, want in values.items():
        got = reader.read(key)
        assert got.dtype.isnative and got.dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_a_dataset_claiming_bytes_past_the_end_is_corrupt(sharded, tmp_path):
    d, _ = sharded
    data = bytearray((d / "model.weights.h5").read_bytes())
    # shrink the file under its last dataset: HDF5's own end-of-file check or ours must say so
    (tmp_path / "short.weights.h5").write_bytes(bytes(data[: len(data) - 1000]))
    with pytest.raises(warmstart.CorruptCheckpointError):
        reader = open_source(str(tmp_path / "short.weights.h5"))
        for key in reader.records:
            reader.read(key)


def _structure_mutations(path, seed: int, count: int):
    """Files with 1, 4 or 16 random bytes of their HDF5 structure (not of tensor data) replaced."""
    data = path.read_bytes()
    data_bytes = set()
    for r in open_source(str(path)).records.values():
        data_bytes.update(range(r.offset, r.offset + r.stored_bytes))
    structure = [i for i in range(len(data)) if i not in data_bytes]
    rng = random.Random(seed)
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.choice([1, 4, 16])):
            mutated[rng.choice(structure)] = rng.randrange(256)
        yield bytes(mutated)


@pytest.mark.parametrize("kind", ["model.weights.h5", "model.keras", "legacy.h5"])
def test_fuzz_damaged_keras_files_are_typed_errors_never_a_crash(tmp_path, kind):
    """Random bytes in the structure of files Keras wrote: each opens and reads, or is a warmstart
    error. With seed 2, one of the .weights.h5 mutations makes HDF5 crash or loop (it kills a process
    that reads it in place); it must end as a CorruptCheckpointError, not as the end of this run.
    Seeds 1-6 (3,600 mutations) were run: all typed errors or clean reads."""
    model = randomized(mlp(widths=(4,)))
    model.save(tmp_path / "model.keras") if kind == "model.keras" else None
    model.save(tmp_path / "legacy.h5") if kind == "legacy.h5" else model.save_weights(tmp_path / "model.weights.h5")
    original = tmp_path / kind
    path = tmp_path / f"damaged-{kind}"
    outcomes = {"read": 0, "error": 0, "crash": 0}
    for mutated in _structure_mutations(original, 2, 200):
        path.write_bytes(mutated)
        try:
            reader = open_source(str(path))
            for key in reader.records:
                reader.read(key)
            outcomes["read"] += 1
        except warmstart.WarmStartError as exc:
            outcomes["crash" if "the HDF5 library" in str(exc) else "error"] += 1
    assert outcomes["error"] > 50, outcomes


def test_a_keras_target_is_planned_from_its_configuration_alone(tmp_path):
    """A .keras target's table comes from its config.json (the model built with no variable
    allocated): the same table as the loaded model's, also for an archive without its weights."""
    import zipfile

    from warmstart.tables import table_from_trackable

    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=7)
    model.save(tmp_path / "full.keras")
    with zipfile.ZipFile(tmp_path / "full.keras") as src, zipfile.ZipFile(tmp_path / "config-only.keras", "w") as out:
        for info in src.infolist():
            if info.filename != "model.weights.h5":
                out.writestr(info, src.read(info))
    want = [(v.name, v.key, v.shape, v.dtype, v.weights_path) for v in table_from_trackable(model).variables]
    for name in ("full.keras", "config-only.keras"):
        got = warmstart.signature_of(str(tmp_path / name))
        assert [(v.name, v.key, v.shape, v.dtype, v.weights_path) for v in got.variables] == want, name


@keras.saving.register_keras_serializable(package="warmstart_tests")
class Tower(keras.Model):
    """A subclassed model: its layers are attributes, its structure is its code."""

    def __init__(self, width: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.inner = keras.layers.Dense(width, name="inner")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.inner(x))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def nested() -> keras.Model:
    inputs = keras.Input((4,))
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(4, name="b")],
                             name="block")
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(block(inputs)))


def subclassed() -> keras.Model:
    model = Tower()
    model(np.zeros((1, 4), "float32"))  # built
    return model


@pytest.mark.parametrize("make", [nested, subclassed])
def test_nested_and_subclassed_models_from_their_weights_files(make, tmp_path):
    """Into a live model (assign) and into a .weights.h5 template (stream): Keras loads the same weights."""
    source = randomized(make())
    source.save_weights(tmp_path / "source.weights.h5")
    target = make()
    report = warmstart.transfer(str(tmp_path / "source.weights.h5"), target, str(tmp_path / "live"))
    assert report.plan.ok and report.plan.counts["copy"] == len(source.weights)
    make().save_weights(tmp_path / "template.weights.h5")
    warmstart.transfer(str(tmp_path / "source.weights.h5"), str(tmp_path / "template.weights.h5"),
                       str(tmp_path / "streamed"))
    loaded = make()
    loaded.load_weights(tmp_path / "streamed" / "model.weights.h5")
    for model in (target, loaded):
        for got, want in zip(model.weights, source.weights):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=want.path)


def test_a_cached_structure_of_an_older_format_is_read_again_from_the_file(sharded):
    """The flow caches a Keras file's structure; one cached by an older warmstart (without the layer names
    and configuration the names come from) is not trusted: the file's structure is read again."""
    from warmstart.formats import KerasWeightsReader

    d, _ = sharded
    fresh = KerasWeightsReader(str(d / "model.weights.h5"))
    old = {"format": "warmstart.keras-structure.v1", "records": []}
    again = KerasWeightsReader(str(d / "model.weights.h5"), structure=old)
    assert again.records == fresh.records and again.groups == fresh.groups
    cached = KerasWeightsReader(str(d / "model.weights.h5"), structure=json.loads(json.dumps(fresh.structure())))
    assert cached.records == fresh.records and cached.groups == fresh.groups and cached.legacy is None
    assert list(warmstart.tables.table_from_reader(cached)) == list(warmstart.tables.table_from_reader(fresh))
