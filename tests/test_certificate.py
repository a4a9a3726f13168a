"""The parity certificate on real Keras models (random weights): a correct transfer certifies, bit-equal layer by
layer; a changed activation, epsilon or dtype policy, a stale Normalization, an output another tool loaded by
position and vocabulary rows copied by position are each caught and named, with nothing published under
``--verify``; ``warmstart verify`` checks outputs Keras wrote itself.

Every model is built and saved by Keras; every output is written by warmstart or Keras and loaded back by
``load_weights``.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_models as km
import numpy as np
import pytest
import yaml

import warmstart
from warmstart.cli import main


def trained(model: keras.Model, seed: int = 3) -> keras.Model:
    """Random weights everywhere (variances positive: a BatchNormalization computes with their square root)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = rng.normal(0, 0.3, v.shape)
        if "variance" in v.path:
            value = np.abs(value) + 0.5
        v.assign(value.astype(v.dtype))
    return model


def tagger(activation: str = "relu", epsilon: float = 1e-3, dtype: str | None = None) -> keras.Model:
    """``keras_models.functional`` with what a new configuration may change on purpose or by mistake."""
    ids = keras.Input((km.SEQUENCE,), dtype="int32", name="ids")
    h = keras.layers.Embedding(40, 8, name="words")(ids)
    h = keras.layers.LayerNormalization(epsilon=epsilon, name="words_norm")(h)
    a = keras.layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    h = keras.layers.BatchNormalization(name="attention_bn")(h + a)
    h = keras.layers.LSTM(6, name="recurrent")(h)
    h = keras.layers.Dense(5, activation=activation, dtype=dtype, name="hidden")(h)
    return keras.Model(ids, keras.layers.Dense(3, name="head")(h), name="tagger")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("certificate") / "source.keras"
    trained(tagger()).save(path)
    return str(path)


def _saved(model: keras.Model, path: Path) -> str:
    model.save(path) if path.suffix == ".keras" else model.save_weights(path)
    return str(path)


def test_a_correct_transfer_certifies_every_layer_bit_equal(source, tmp_path):
    out = tmp_path / "out"
    report = warmstart.transfer(source, _saved(tagger(), tmp_path / "new.keras"), str(out), verify=True)
    certificate = report.certificate
    assert certificate.passed and not certificate.not_checked
    assert {c.target for c in certificate.checks} == {
        "words", "words_norm", "attention/query", "attention/key", "attention/value", "attention/attention_output",
        "attention", "attention_bn", "recurrent", "hidden", "head", "tagger"}  # leaves, composites, the model
    assert all(c.bit_equal and c.max_abs == 0 and c.compared > 0 for c in certificate.checks)
    assert [c.target for c in certificate.checks][:2] == ["words", "words_norm"]  # in model order
    recorded = json.loads((out / "warmstart.json").read_text())["verify"]
    assert recorded["verdict"] == "passed" and recorded["digest"] == report.plan.digest
    assert recorded["probes"] == 4 and recorded["seed"] == 0
    assert report.to_json()["verify"]["counts"]["layer"] == 12
    tagger().load_weights(out / "model.weights.h5")  # the output loads as usual


@pytest.mark.parametrize(("change", "layer", "cause"), [
    ({"activation": "gelu"}, "hidden", "activation: 'relu' -> 'gelu'"),
    ({"epsilon": 1e-6}, "words_norm", "epsilon: 0.001 -> 1e-06"),
    ({"dtype": "mixed_float16"}, "hidden", "dtype policy 'float32' -> 'mixed_float16'"),
], ids=["activation", "epsilon", "dtype-policy"])
def test_a_changed_layer_fails_the_transfer_with_exit_5_and_nothing_is_published(source, tmp_path, capsys, change,
                                                                                  layer, cause):
    out = tmp_path / "out"
    target = _saved(tagger(**change), tmp_path / "new.keras")
    assert main(["transfer", source, target, str(out), "--verify", "--no-prefect"]) == 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing was published" in err
    assert f"layer {layer!r}" in err.split("first failure:")[1].split(")")[0] and cause in err, err
    assert not out.exists()


def test_the_python_api_raises_and_names_the_failure_and_the_model_it_inherits_from(source, tmp_path):
    with pytest.raises(warmstart.CertificateError) as caught:
        warmstart.transfer(source, _saved(tagger(activation="gelu"), tmp_path / "new.keras"), str(tmp_path / "out"),
                           verify=True)
    failures = {c.target: c for c in caught.value.certificate.failures}
    assert set(failures) == {"hidden", "tagger"} and caught.value.exit_code == 5
    assert failures["tagger"].cause == "its layer 'hidden' differs"
    assert isinstance(caught.value, ValueError) and not (tmp_path / "out").exists()


def test_verify_warn_publishes_and_reports(source, tmp_path, capsys):
    out = tmp_path / "out"
    target = _saved(tagger(epsilon=1e-6), tmp_path / "new.keras")
    assert main(["transfer", source, target, str(out), "--verify=warn", "--no-prefect", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["verify"]["verdict"] == "failed" and "published: --verify=warn" in captured.err
    assert json.loads((out / "warmstart.json").read_text())["verify"]["verdict"] == "failed"


def test_excluded_layers_are_listed_with_the_rule_not_compared(source, tmp_path):
    rules = {"verify": {"exclude": ["hidden", "tagger"]}}
    report = warmstart.transfer(source, _saved(tagger(activation="gelu"), tmp_path / "new.keras"),
                                str(tmp_path / "out"), rules=rules, verify=True)
    skipped = {n.target: n.reason for n in report.certificate.not_checked}
    assert report.certificate.passed and skipped["hidden"] == "excluded by the rules (verify.exclude[0] 'hidden')"


def test_a_template_without_layers_is_inconclusive_until_its_model_is_named(source, tmp_path, capsys):
    target = _saved(tagger(), tmp_path / "new.weights.h5")
    assert main(["transfer", source, target, str(tmp_path / "out"), "--verify", "--no-prefect"]) == 5
    assert "certificate inconclusive" in capsys.readouterr().err and not (tmp_path / "out").exists()
    rules = {"verify": {"target_model": _saved(tagger(), tmp_path / "new.keras")}}
    report = warmstart.transfer(source, target, str(tmp_path / "out"), rules=rules, verify=True)
    assert report.certificate.passed and len(report.certificate.checks) == 12


def _normalizer(values: np.ndarray | None = None) -> keras.Model:
    x = keras.Input((4,), name="x")
    norm = keras.layers.Normalization(name="norm")
    model = keras.Model(x, keras.layers.Dense(2, name="head")(norm(x)), name="scaled")
    if values is not None:
        norm.adapt(values)
    return model


@pytest.mark.slow
def test_a_stale_normalization_is_caught_where_the_output_is_restored_as_a_checkpoint(tmp_path):
    """Into a TF2 template checkpoint the output is a checkpoint, restored by tf.train.Checkpoint: Normalization's
    mean and variance stay those of the freshly built model. Into the .keras file it is load_weights'."""
    import tensorflow as tf

    source = _normalizer(np.random.default_rng(0).normal(3, 2, (64, 4)).astype("float32"))
    source.get_layer("head").kernel.assign(np.random.default_rng(1).normal(size=(4, 2)))
    tf.train.Checkpoint(model=source).write(str(tmp_path / "run" / "ckpt"))
    rules = {"source_structure": _saved(source, tmp_path / "source.keras"),
             "verify": {"target_model": _saved(_normalizer(), tmp_path / "new.keras")}}
    tf.train.Checkpoint(model=_normalizer()).write(str(tmp_path / "init" / "ckpt"))
    with pytest.raises(warmstart.CertificateError) as caught:
        warmstart.transfer(str(tmp_path / "run" / "ckpt"), str(tmp_path / "init" / "ckpt"), str(tmp_path / "out"),
                           rules=rules, verify=True)
    first = caught.value.certificate.failures[0]
    assert first.target == "norm" and first.layer_class == "Normalization"
    assert first.cause.startswith("stale derived state: norm computes with state its variables no longer give")
    assert "stale derived state" in str(caught.value) and not (tmp_path / "out").exists()
    report = warmstart.transfer(str(tmp_path / "run" / "ckpt"), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                                rules={"source_structure": rules["source_structure"]}, verify=True)
    assert report.certificate.passed and {c.target for c in report.certificate.checks} == {"norm", "head", "scaled"}


def test_nested_models_and_custom_layers_certify(tmp_path):
    """A Functional model nested in another, and a classifier over a nested keras-hub-shaped backbone (custom
    TransformerEncoder layers building named sub-layers, a dropout run in inference mode): every layer with
    weights compared and equal."""
    for name, build in (("nested", km.nested), ("bert", km.bert_classifier)):
        source = _saved(trained(build()), tmp_path / f"{name}-source.keras")
        report = warmstart.transfer(source, _saved(build(), tmp_path / f"{name}-new.keras"), str(tmp_path / name),
                                    verify="warn")
        certificate = report.certificate
        assert not certificate.not_checked, certificate.not_checked
        if name == "nested":
            names = {c.target for c in certificate.checks}
            assert certificate.passed and {"encoder_dense", "encoder_norm", "encoder", "head"} <= names, names
            assert [c.layer_class for c in certificate.checks].count("Functional") == 2  # the encoder, the model
            continue
        passed = {c.target for c in certificate.checks if c.passed}
        assert {"transformer_layer_0", "transformer_layer_0/self_attention", "transformer_layer_0/self_attention/query",
                "token_embedding", "embeddings_layer_norm", "pooled_dense", "logits"} <= passed, passed
        # The backbone adds position embeddings computed once, when the model was built (an Embedding called on
        # keras.ops.arange, not on an input): a constant of each model, not a weight, so no transfer carries it.
        # Every layer agrees, the backbone does not: the certificate sees what no weight holds.
        failed = {c.layer_class: c for c in certificate.failures}
        assert set(failed) == {"BertBackbone", "Functional"}
        assert failed["BertBackbone"].cause == "the same configuration computes other values from the copied weights"
        assert failed["Functional"].cause == f"its layer {failed['BertBackbone'].target!r} differs"


@keras.saving.register_keras_serializable(package="warmstart_tests")
class NoisyDense(keras.layers.Dense):
    """A Dense layer that adds noise even in inference: no two calls agree."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.noise = keras.random.SeedGenerator(7)

    def call(self, inputs, training=None):
        out = super().call(inputs)
        return out + keras.random.normal(keras.ops.shape(out), seed=self.noise)


def test_a_layer_random_at_call_time_is_listed_with_the_reason(tmp_path):
    def model():
        x = keras.Input((4,), name="x")
        return keras.Model(x, keras.layers.Dense(2, name="head")(NoisyDense(3, name="noisy")(x)), name="noisy_model")

    report = warmstart.transfer(_saved(trained(model()), tmp_path / "s.keras"), _saved(model(), tmp_path / "t.keras"),
                                str(tmp_path / "out"), verify=True)
    skipped = {n.target: n.reason for n in report.certificate.not_checked}
    assert skipped["noisy"].startswith("random at call time") and "noisy_model" in skipped
    assert report.certificate.passed and [c.target for c in report.certificate.checks] == ["head"]


def _stack(inserted: bool) -> keras.Model:
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, name="inserted")(x) if inserted else x
    h = keras.layers.Dense(8, activation="tanh", name="a")(h)
    h = keras.layers.Dense(8, activation="tanh", name="b")(h)
    return keras.Model(x, keras.layers.Dense(3, name="head")(h), name="stack")


def test_verify_checks_outputs_keras_wrote_itself(tmp_path, capsys):
    """Keras' load_weights(skip_mismatch=True) + save_weights: into the same model it certifies; into a model with
    an inserted layer Keras loads by class-counted position, so 'a' gets b's weights: the certificate names 'a'."""
    source = trained(_stack(False))
    source_file = _saved(source, tmp_path / "source.keras")
    source.save_weights(tmp_path / "source.weights.h5")
    for inserted in (False, True):
        target = _stack(inserted)
        target.load_weights(tmp_path / "source.weights.h5", skip_mismatch=True)
        out = tmp_path / f"keras-{inserted}"
        out.mkdir()
        target.save_weights(out / "model.weights.h5")
        target_file = _saved(_stack(inserted), tmp_path / f"new-{inserted}.keras")
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"on_missing": "init"}))
        code = main(["verify", source_file, target_file, str(out), "--rules", str(tmp_path / "rules.yaml"), "--json"])
        doc = json.loads(capsys.readouterr().out)["verify"]
        if not inserted:
            assert code == 0 and doc["verdict"] == "passed" and doc["counts"]["layer"] == 4
            continue
        assert code == 5 and doc["verdict"] == "failed"
        failed = [c for c in doc["checks"] if not c["passed"]]
        assert failed[0]["target"] == "a" and failed[0]["cause"] == \
            "the same configuration computes other values from the copied weights"
        assert {"target": "inserted", "kind": "layer"}.items() <= next(
            n for n in doc["not_checked"] if n["target"] == "inserted").items()


def _vocab_model(size: int) -> keras.Model:
    ids = keras.Input((5,), dtype="int32", name="ids")
    h = keras.layers.Embedding(size, 4, name="emb")(ids)
    return keras.Model(ids, keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(h)), name="clf")


def test_vocabulary_rows_follow_their_tokens(tmp_path, capsys):
    """A grown, reordered vocabulary remapped by the plan: every surviving token's row is its source row, the new
    rows are counted, not compared. The same-size reordered vocabulary copied by position is caught by a declared
    lookup, and nothing is published."""
    source = _saved(trained(_vocab_model(10)), tmp_path / "source.keras")
    old = [f"t{i}" for i in range(10)]
    (tmp_path / "old.txt").write_text("\n".join(old) + "\n")
    (tmp_path / "grown.txt").write_text("\n".join(["t9", "t0", "new1", *old[1:9], "new2"]) + "\n")
    (tmp_path / "reordered.txt").write_text("\n".join(reversed(old)) + "\n")
    rules = {"transforms": [{"target": "emb/embeddings",
                             "vocab": {"old": str(tmp_path / "old.txt"), "new": str(tmp_path / "grown.txt")}}]}
    report = warmstart.transfer(source, _saved(_vocab_model(12), tmp_path / "grown.keras"), str(tmp_path / "out"),
                                rules=rules, verify=True)
    rows = next(c for c in report.certificate.checks if c.kind == "rows")
    assert rows.passed and rows.bit_equal and rows.target == "emb/embeddings"
    assert rows.note == "10 rows with a source row compared (the plan's vocab remap); 2 new rows not compared"
    assert {n.target for n in report.certificate.not_checked} == {"emb", "clf"}  # remapped: compared as rows
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"verify": {"lookups": [
        {"target": "emb/.*", "old": str(tmp_path / "old.txt"), "new": str(tmp_path / "reordered.txt")}]}}))
    target = _saved(_vocab_model(10), tmp_path / "same.keras")
    assert main(["transfer", source, target, str(tmp_path / "out2"), "--rules", str(tmp_path / "rules.yaml"),
                 "--verify", "--no-prefect"]) == 5
    err = capsys.readouterr().err
    assert "rows 'emb/embeddings'" in err and "vocabulary rows: 10 of 10 rows are not their token's source row" in err
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_mobilenet_v2_certifies(tmp_path):
    """keras.applications.MobileNetV2 (weights=None, random weights): convolutions, depthwise convolutions, batch
    normalizations and the model compared, bit-equal."""
    build = lambda: keras.applications.MobileNetV2(input_shape=(64, 64, 3), weights=None, classes=10)  # noqa: E731
    source = _saved(trained(build()), tmp_path / "source.keras")
    report = warmstart.transfer(source, _saved(build(), tmp_path / "new.keras"), str(tmp_path / "out"), verify=True)
    certificate = report.certificate
    classes = {c.layer_class for c in certificate.checks}
    assert certificate.passed and not certificate.not_checked and len(certificate.checks) > 100
    assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "Dense", "Functional"} <= classes
    assert all(c.bit_equal for c in certificate.checks)


@pytest.mark.integration
def test_an_output_on_s3_is_certified_before_it_is_published(source, s3_server, s3_bucket, tmp_path):
    """The staged objects are read back (downloaded) for the certificate; a failed one removes them all."""
    import fsspec

    options = s3_server.storage_options()
    report = warmstart.transfer(source, _saved(tagger(), tmp_path / "new.keras"), f"{s3_bucket}/warm",
                                storage_options=options, verify=True)
    assert report.certificate.passed and report.certificate.output == f"{s3_bucket}/warm"
    fs = fsspec.filesystem("s3", **options)
    assert json.loads(fs.cat(f"{s3_bucket}/warm/warmstart.json"))["verify"]["verdict"] == "passed"
    with pytest.raises(warmstart.CertificateError):
        warmstart.transfer(source, _saved(tagger(epsilon=1e-6), tmp_path / "changed.keras"), f"{s3_bucket}/bad",
                           storage_options=options, verify=True)
    fs.invalidate_cache()
    assert not fs.exists(f"{s3_bucket}/bad") or fs.ls(f"{s3_bucket}/bad") == []


def test_verify_refuses_an_unfinished_output_and_code_in_its_rules(source, tmp_path, capsys):
    out = tmp_path / "out"
    warmstart.transfer(source, _saved(tagger(), tmp_path / "new.keras"), str(out))
    (out / ".warmstart-incomplete").write_text("")
    assert main(["verify", source, str(tmp_path / "new.keras"), str(out)]) == 3
    assert "not a finished output" in capsys.readouterr().err
    with pytest.raises(warmstart.UsageError, match="verify.source_model: 'py:keras_models:functional' names Python"):
        warmstart.load_rules({"verify": {"source_model": "py:keras_models:functional"}})


def test_the_target_model_is_built_without_drawing_initial_values_the_output_overwrites(source, tmp_path):
    """load_weights loads every variable of every layer or raises, so the target's model is built without drawing
    initial values (no random-normal transients; its large variables cost no memory until they are loaded); the
    verdicts stand."""
    from warmstart.verification import keras_models

    new = _saved(trained(tagger(), seed=5), tmp_path / "new.keras")
    built = keras_models._build(new, None, overwritten=True)
    initializers = {type(getattr(built.get_layer(name), key)).__name__ for name, key in (
        ("words", "embeddings_initializer"), ("hidden", "kernel_initializer"), ("head", "bias_initializer"),
        ("attention_bn", "moving_variance_initializer"))}
    assert initializers == {"Unwritten"}
    assert not any(np.any(v.numpy()) for v in built.get_layer("head").weights)  # small ones: zeros
    assert type(keras_models._build(new, None).get_layer("words").embeddings_initializer).__name__ == "RandomUniform"
    report = warmstart.transfer(source, new, str(tmp_path / "out"), verify=True)
    assert report.certificate.passed and len(report.certificate.checks) == 12
    assert all(c.bit_equal and c.compared > 0 for c in report.certificate.checks)


def test_the_certificate_returns_freed_blocks_to_the_system():
    """After a large block has come and gone, glibc would keep blocks of a few MiB in its heap once freed; the
    certificate fixes malloc's mmap threshold so that they go back to the system (its peak memory, VmHWM)."""
    import subprocess
    import sys

    code = """
import numpy as np, sys
from pathlib import Path
from warmstart.verification.memory import return_freed_memory
anon = lambda: int(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('RssAnon')).split()[1])
if sys.argv[1] == 'set':
    assert return_freed_memory() and return_freed_memory()
big = np.ones(4 << 20, np.float32); del big  # 16 MiB: glibc raises its threshold to 16 MiB when it is freed
blocks = [np.ones(1 << 20, np.float32) for _ in range(32)]  # 4 MiB each, 128 MiB
before = anon()
del blocks[::2]  # half of them freed, between blocks still in use
print((before - anon()) >> 10)  # MiB returned to the system
"""
    returned = {how: int(subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True,
                                    check=True).stdout) for how in ("set", "default")}
    assert returned["default"] < 16 < 56 < returned["set"], returned  # of the 64 MiB freed


def test_a_large_target_variable_costs_no_memory_until_the_output_is_loaded(tmp_path):
    """A 64 MiB embedding built from a .keras file's configuration for a certificate: its pages are written by
    load_weights only (Keras' own build draws its random values: 64 MiB and more at once)."""
    import subprocess
    import sys

    ids = keras.Input((4,), dtype="int32")
    keras.Model(ids, keras.layers.Embedding(16384, 1024, name="big")(ids)).save(tmp_path / "big.keras")
    code = """
import sys, keras
from pathlib import Path
from warmstart.verification import keras_models
anon = lambda: int(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('RssAnon')).split()[1])
keras_models._build(sys.argv[1], None, overwritten=True)  # the libraries' first use, not measured
before = anon()
model = keras_models._build(sys.argv[1], None, overwritten=sys.argv[2] == 'unwritten')
print((anon() - before) >> 10)
"""
    grown = {how: int(subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.keras"), how],
                                     capture_output=True, text=True, check=True).stdout.split()[-1])
             for how in ("unwritten", "drawn")}
    assert grown["unwritten"] < 16 < 64 <= grown["drawn"], grown  # MiB
