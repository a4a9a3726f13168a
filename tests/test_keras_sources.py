"""Keras 3 weights files (``.weights.h5``, ``.keras``) as sources, named by layer names.

Keras' own ``load_weights`` matches by the file's class-counted paths (``layers/dense_1``): a layer
inserted before others shifts them. warmstart names a file's variables by the layer names Keras
records in it (``enc2/vars/0``) and matches them to the target's layers by name.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import fsspec  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import warmstart  # noqa: E402

RNG = np.random.default_rng(11)


def encoder(inserted: bool = False, named: bool = True) -> keras.Model:
    def name(n):
        return n if named else None

    inputs = keras.Input((16,), name="x")
    h = keras.layers.Dense(16, name=name("enc1"))(inputs)
    if inserted:
        h = keras.layers.Dense(16, name=name("adapter"))(h)
    h = keras.layers.Dense(16, name=name("enc2"))(h)
    return keras.Model(inputs, keras.layers.Dense(16, name=name("head"))(h))


def randomized(model: keras.Model) -> keras.Model:
    for v in model.weights:
        v.assign(RNG.normal(size=v.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras-sources")
    source = randomized(encoder())
    source.save_weights(d / "src.weights.h5")
    source.save(d / "src.keras")
    encoder(inserted=True).save(d / "grown.keras")
    return d, source


def test_a_weights_file_is_read_by_layer_names_without_keras(files):
    d, _ = files
    table = warmstart.read_table(str(d / "src.weights.h5"))
    assert table.kind == "keras-weights"
    assert [(v.name, v.key) for v in table.variables][:3] == [
        ("enc1/vars/0", "layers/dense/vars/0"), ("enc1/vars/1", "layers/dense/vars/1"),
        ("enc2/vars/0", "layers/dense_1/vars/0")]
    assert not any(v.positional for v in table.variables)
    assert {v.name: (v.shape, v.dtype) for v in table.variables}["enc2/vars/0"] == ((16, 16), "float32")
    assert {v.name: v.guessed for v in table.variables}["enc2/vars/0"] == ("enc2/kernel",)  # by its class: an alias
    archive = warmstart.read_table(str(d / "src.keras"))  # its config.json says what each vars/N is
    assert [(v.name, v.key, v.weights_path, v.shape) for v in archive.variables] == [
        (v.guessed[0], v.key, v.name, v.shape) for v in table.variables]
    assert [v.name for v in archive.variables][:3] == ["enc1/kernel", "enc1/bias", "enc2/kernel"]


@pytest.mark.filterwarnings("ignore::UserWarning:keras")  # Keras' own load_weights, shown for contrast
@pytest.mark.parametrize("source_file", ["src.weights.h5", "src.keras"])
@pytest.mark.parametrize("strategy, kind", [("auto", "stream"), ("assign", "assign")])
def test_a_grown_model_gets_each_layer_its_own_weights_where_keras_would_shift_them(files, tmp_path, source_file,
                                                                                  strategy, kind):
    """auto: streamed into the .keras target's own weights, nothing built; assign: the model is built."""
    d, source = files
    out = tmp_path / "out"
    report = warmstart.transfer(str(d / source_file), str(d / "grown.keras"), str(out), rules={"on_missing": "init"},
                                strategy=strategy)
    assert report.strategy == kind and not report.plan.positional
    assert {e.action for e in report.plan.entries if e.target.startswith("adapter/")} == {"init"}
    warm = encoder(inserted=True)
    warm.load_weights(out / "model.weights.h5")
    for layer in ("enc1", "enc2", "head"):
        for got, want in zip(warm.get_layer(layer).get_weights(), source.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(got, want)
    # Keras itself matches by class count: its 'adapter' (the file's dense_1) gets the source's enc2
    shifted = encoder(inserted=True)
    shifted.load_weights(d / "src.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(shifted.get_layer("adapter").get_weights()[0], source.get_layer("enc2").get_weights()[0])


def test_unnamed_layers_in_a_weights_file_are_flagged_positional(tmp_path):
    source = randomized(encoder(named=False))
    source.save_weights(tmp_path / "unnamed.weights.h5")
    table = warmstart.read_table(str(tmp_path / "unnamed.weights.h5"))
    assert all(v.positional for v in table.variables)
    plan = warmstart.plan(str(tmp_path / "unnamed.weights.h5"), encoder(named=False), rules={"on_missing": "init"})
    assert plan.positional or not plan.transferred


def test_a_real_backbone_from_its_weights_file_equals_keras_own_load(tmp_path):
    def mobilenet() -> keras.Model:
        return keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=10)

    source = randomized(mobilenet())
    source.save_weights(tmp_path / "src.weights.h5")
    target = mobilenet()
    report = warmstart.transfer(str(tmp_path / "src.weights.h5"), target, str(tmp_path / "out"))
    assert report.plan.ok and report.plan.counts["copy"] == len(target.weights) and not report.plan.positional
    reference = mobilenet()
    reference.load_weights(tmp_path / "src.weights.h5")
    for got, want in zip(target.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=got.path)
    x = RNG.normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(target(x).numpy(), reference(x).numpy())


def test_a_weights_file_on_object_storage(files, tmp_path):
    d, source = files
    fs = fsspec.filesystem("memory")
    fs.pipe("/keras-src/src.weights.h5", (d / "src.weights.h5").read_bytes())
    target = encoder()
    warmstart.transfer("memory://keras-src/src.weights.h5", target, str(tmp_path / "out"))
    for got, want in zip(target.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_what_a_keras_source_cannot_do_is_said_before_anything_is_written(files, tmp_path):
    d, _ = files
    out = tmp_path / "out"
    with pytest.raises(warmstart.UsageError, match="from a Keras weights file only assign works"):
        warmstart.transfer(str(d / "src.weights.h5"), str(d / "grown.keras"), str(out), strategy="restore",
                           rules={"on_missing": "init"})
    import tensorflow as tf

    template = str(tmp_path / "template" / "ckpt")
    tf.train.Checkpoint(model=encoder()).write(template)  # a TF2 template: auto would stream
    with pytest.raises(warmstart.UsageError, match="from a Keras weights file only assign works"):
        warmstart.transfer(str(d / "src.weights.h5"), template, str(out))
    assert not out.exists()


def test_damaged_keras_files_are_corrupt_inputs(files, tmp_path):
    d, _ = files
    data = (d / "src.weights.h5").read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(warmstart.CorruptCheckpointError):
        warmstart.read_table(str(tmp_path / "cut.weights.h5"))
    (tmp_path / "zip.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(warmstart.CorruptCheckpointError):
        warmstart.read_table(str(tmp_path / "zip.keras"))
    shutil.copy(d / "src.keras", tmp_path / "copy.keras")
    with pytest.raises(warmstart.InputNotFoundError):
        warmstart.read_table(str(tmp_path / "absent.weights.h5"))


def test_the_cli_transfers_from_a_keras_file_with_the_engine(files, tmp_path):
    import json
    import subprocess
    import sys

    d, source = files
    rules = tmp_path / "rules.yaml"
    rules.write_text("on_missing: init\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(d / "src.keras"),
                           str(d / "grown.keras"), str(tmp_path / "out"), "--rules", str(rules), "--json", "-v"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "running the engine directly" in done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok" and doc["strategy"] == "stream"
    warm = encoder(inserted=True)
    warm.load_weights(tmp_path / "out" / "model.weights.h5")
    np.testing.assert_array_equal(warm.get_layer("enc2").get_weights()[0], source.get_layer("enc2").get_weights()[0])


@pytest.mark.integration
def test_the_flow_warm_starts_from_a_keras_file_on_s3(prefect_api, files, tmp_path, s3_server, s3_bucket, monkeypatch):
    """The flow with a .weights.h5 on moto S3 into a grown .keras model: its structure is cached (a
    re-run reads none), its tensors read by byte range, the output taken by Keras' load_weights."""
    from warmstart.flows.warm_start import warm_start
    from servers import clear_fs_caches

    d, source = files
    s3_server.filesystem().put_file(str(d / "src.weights.h5"), f"{s3_bucket}/runs/src.weights.h5")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    summaries = []
    for run in ("a", "b"):
        summaries.append(warm_start(source=f"s3://{s3_bucket}/runs/src.weights.h5", target=str(d / "grown.keras"),
                                    output=str(tmp_path / run), rules={"on_missing": "init"}))
    first, second = summaries
    assert first["status"] == "ok" and first["counts"]["copy"] == 6 and first["strategy"] == "stream"
    assert first["bytes_read"] == sum(np.asarray(w).nbytes for w in source.weights)  # the tensors' bytes, no more
    assert not first["source_index_cached"] and second["source_index_cached"]
    warm = encoder(inserted=True)
    warm.load_weights(tmp_path / "b" / "model.weights.h5")
    for name in ("enc1", "enc2", "head"):
        for got, want in zip(warm.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_a_legacy_h5_model_file_is_read_by_its_weight_names(files, tmp_path):
    d, source = files
    source.save(tmp_path / "old.h5")  # Keras 3 still writes the Keras 2 layout for .h5
    table = warmstart.read_table(str(tmp_path / "old.h5"))
    assert {v.name: v.key for v in table.variables}["enc2/kernel"] == "model_weights/enc2/enc2/kernel"
    warm = encoder(inserted=True)
    report = warmstart.transfer(str(tmp_path / "old.h5"), warm, str(tmp_path / "out"), rules={"on_missing": "init"})
    assert {e.target: e.reason for e in report.plan.entries}["enc2/kernel"] == "same name"
    np.testing.assert_array_equal(warm.get_layer("enc2").get_weights()[0], source.get_layer("enc2").get_weights()[0])


def test_a_keras_2_weights_file_with_split_name_lists(tmp_path):
    """What Keras 2 (and Hugging Face's tf_model.h5) write: weight names with ':0', long name lists
    split into layer_names0, layer_names1, ... (HDF5's 64 KiB object-header limit)."""
    import h5py

    kernel = RNG.normal(size=(3, 2)).astype("float32")
    with h5py.File(tmp_path / "tf_model.h5", "w") as f:
        f.attrs["layer_names0"] = [b"embed"]
        f.attrs["layer_names1"] = [b"dense_1"]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for layer, names in (("embed", []), ("dense_1", [b"dense_1/kernel:0", b"dense_1/bias:0"])):
            g = f.create_group(layer)
            g.attrs["weight_names"] = names
        f["dense_1/dense_1/kernel:0"] = kernel
        f["dense_1/dense_1/bias:0"] = np.zeros(2, "float32")
    reader_table = warmstart.read_table(str(tmp_path / "tf_model.h5"))
    assert {v.name: (v.shape, v.key) for v in reader_table.variables} == {
        "dense_1/kernel": ((3, 2), "dense_1/dense_1/kernel:0"), "dense_1/bias": ((2,), "dense_1/dense_1/bias:0")}
    from warmstart.formats import open_source

    np.testing.assert_array_equal(open_source(str(tmp_path / "tf_model.h5")).read("dense_1/dense_1/kernel:0"), kernel)


@pytest.mark.integration
@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_keras_sources_on_object_storage(files, tmp_path, request, store):
    """moto S3 and the GCS emulator: each Keras file kind read over fsspec, the target gets the weights."""
    d, source = files
    server = request.getfixturevalue(f"{store}_server")
    bucket = request.getfixturevalue(f"{store}_bucket")
    fs, options = server.filesystem(), server.storage_options()
    source.save(tmp_path / "old.h5")
    for path in (d / "src.weights.h5", d / "src.keras", tmp_path / "old.h5"):
        fs.put_file(str(path), f"{bucket}/models/{path.name}")
    for name in ("src.weights.h5", "src.keras", "old.h5"):
        target = encoder()
        report = warmstart.transfer(f"{bucket}/models/{name}", target, str(tmp_path / f"out-{name}"),
                                    storage_options=options)
        assert report.plan.ok and report.plan.counts["copy"] == 6, name
        for got, want in zip(target.weights, source.weights):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=name)


def test_stream_into_a_keras_weights_template_needs_no_tensorflow(files, tmp_path):
    import json
    import subprocess
    import sys

    d, source = files
    template = encoder(inserted=True)
    template.save_weights(tmp_path / "grown.weights.h5")
    adapter_before = template.get_layer("adapter").get_weights()
    code = ("import json, sys, warmstart; r = warmstart.transfer(sys.argv[1], sys.argv[2], sys.argv[3], "
            "rules={'on_missing': 'init'}); print(json.dumps([r.strategy, r.keras_weights, "
            "'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", code, str(d / "src.weights.h5"), str(tmp_path / "grown.weights.h5"),
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == ["stream", (out / "model.weights.h5").as_uri(), False, False]
    assert sorted(p.name for p in out.iterdir()) == ["model.weights.h5", "warmstart.json"]  # no TF state file
    warm = encoder(inserted=True)
    warm.load_weights(out / "model.weights.h5")
    for layer in ("enc1", "enc2", "head"):
        for got, want in zip(warm.get_layer(layer).get_weights(), source.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(got, want)
    for got, want in zip(warm.get_layer("adapter").get_weights(), adapter_before):
        np.testing.assert_array_equal(got, want)


def test_stream_into_a_keras_weights_template_on_object_storage(files, tmp_path):
    d, source = files
    encoder().save_weights(tmp_path / "same.weights.h5")
    fs = fsspec.filesystem("memory")
    report = warmstart.transfer(str(d / "src.keras"), str(tmp_path / "same.weights.h5"), "memory://keras-out/warm")
    assert report.keras_weights.endswith("keras-out/warm/model.weights.h5")
    fs.get_file("/keras-out/warm/model.weights.h5", str(tmp_path / "got.weights.h5"))
    warm = encoder()
    warm.load_weights(tmp_path / "got.weights.h5")
    for got, want in zip(warm.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_recompressed_keras_archive_is_read_too(files, tmp_path):
    """Keras stores the weights member uncompressed (read in place); an archive zipped again with
    compression is decompressed once into a temporary file."""
    import zipfile

    d, source = files
    with zipfile.ZipFile(d / "src.keras") as original, \
            zipfile.ZipFile(tmp_path / "deflated.keras", "w", zipfile.ZIP_DEFLATED) as again:
        for name in original.namelist():
            again.writestr(name, original.read(name))
    assert zipfile.ZipFile(tmp_path / "deflated.keras").getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    target = encoder()
    warmstart.transfer(str(tmp_path / "deflated.keras"), target, str(tmp_path / "out"))
    for got, want in zip(target.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_tf1_checkpoint_into_a_keras_3_model_by_rules(tmp_path):
    """The README's walk-through: a TF1 graph's checkpoint warm-starts a Keras 3 model of new names."""
    import tensorflow as tf

    values = {f"encoder/layer_{i}/{w}": RNG.normal(size=shape).astype("float32")
              for i in (1, 2) for w, shape in (("kernel", (16, 16)), ("bias", (16,)))}
    graph = tf.Graph()
    with graph.as_default():
        for name, value in values.items():
            tf.compat.v1.get_variable(name, initializer=value)
        tf.compat.v1.get_variable("global_step", initializer=7)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(tmp_path / "tf1" / "model.ckpt"), global_step=1000)
    encoder().save(tmp_path / "new.keras")
    rules = {"rename": [[r"enc1/(kernel|bias)", r"encoder/layer_1/\1"], [r"enc2/(kernel|bias)", r"encoder/layer_2/\1"],
                        [r"head/.*", None]]}
    report = warmstart.transfer(str(tmp_path / "tf1"), str(tmp_path / "new.keras"), str(tmp_path / "out"), rules=rules)
    assert report.plan.ok and report.plan.counts["copy"] == 4 and report.plan.counts["init"] == 2
    warm = encoder()
    warm.load_weights(tmp_path / "out" / "model.weights.h5")
    for layer, i in (("enc1", 1), ("enc2", 2)):
        kernel, bias = warm.get_layer(layer).get_weights()
        np.testing.assert_array_equal(kernel, values[f"encoder/layer_{i}/kernel"])
        np.testing.assert_array_equal(bias, values[f"encoder/layer_{i}/bias"])


def normalized(center: bool) -> keras.Model:
    """BatchNormalization and LayerNormalization numbering their variables by their configuration: without
    ``center`` (and ``scale``) a BatchNormalization's vars/0 is its moving mean, with them its gamma."""
    inputs = keras.Input((4,), name="x")
    h = keras.layers.BatchNormalization(name="bn", center=center, scale=center)(inputs)
    h = keras.layers.LayerNormalization(name="ln", scale=center)(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


@pytest.mark.parametrize("source_file", ["keras", "weights.h5", "h5"])
@pytest.mark.parametrize("target_file", ["keras", "weights.h5"])
def test_a_layer_configured_otherwise_gets_no_other_variable_by_its_number(tmp_path, source_file, target_file):
    """The new model's normalization layers gained gamma and beta: each variable the source has is copied into
    its own (moving statistics into moving statistics, beta into beta), the new ones keep their initial value;
    vars/N never pairs a moving mean with a gamma (where a bare weights file, source or template, does not say which
    of a layer's variables is which, they keep their initial value). Read back with load_weights."""
    source = randomized(normalized(center=False))
    save = source.save_weights if source_file == "weights.h5" else source.save
    save(tmp_path / f"src.{source_file}")
    new = randomized(normalized(center=True))
    save = new.save_weights if target_file == "weights.h5" else new.save
    save(tmp_path / f"new.{target_file}")
    report = warmstart.transfer(str(tmp_path / f"src.{source_file}"), str(tmp_path / f"new.{target_file}"),
                                str(tmp_path / "out"), rules={"on_missing": "init"})
    assert report.plan.ok
    got = normalized(center=True)
    got.load_weights(tmp_path / "out" / "model.weights.h5")
    have = {v.path: np.asarray(v) for v in source.weights}
    named = "weights.h5" not in (source_file, target_file)
    for g, initial in zip(got.weights, new.weights):
        want = have[g.path] if g.path in have and (named or g.path.startswith("head/")) else np.asarray(initial)
        assert np.array_equal(g, want), g.path


def with_a_sequential_block() -> keras.Model:
    """A functional model holding an unnamed Sequential: the legacy .h5 writes its layers' weight names with the
    Sequential's own name first (sequential/s1/kernel), which no other format names it by."""
    inputs = keras.Input((4,), name="x")
    block = keras.Sequential([keras.layers.Dense(4, name="s1"), keras.layers.BatchNormalization(name="sbn")])
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(block(inputs)))


def test_a_legacy_h5_of_a_model_with_a_sequential_block_matches_its_other_formats(tmp_path):
    source = randomized(with_a_sequential_block())
    source.save(tmp_path / "src.h5")
    with_a_sequential_block().save(tmp_path / "new.keras")
    report = warmstart.transfer(str(tmp_path / "src.h5"), str(tmp_path / "new.keras"), str(tmp_path / "out"))
    assert report.plan.counts["copy"] == len(source.weights) and not report.plan.positional
    got = with_a_sequential_block()
    got.load_weights(tmp_path / "out" / "model.weights.h5")
    for g, w in zip(got.weights, source.weights):
        assert np.array_equal(np.asarray(g), np.asarray(w)), w.path
