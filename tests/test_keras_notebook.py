"""Keras' own notebook patterns: models built in one process, layers Keras named by counting, renamed layers.

Keras names an unnamed layer by its class and a per-process count (``dense_9``, ``dense_10``): such names
are no identity, so warmstart matches those layers as Keras' ``load_weights`` does (by the model's
structure) and flags every such match positional. User-named layers match by name. The scenarios of Keras'
own ``saving_lib_test.py::test_partial_load`` and ``saving_api_test.py::LoadWeightsTests::test_load_weights``
are re-created here against what Keras itself loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras_models import randomized  # noqa: E402

import warmstart  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def sequential(*units: int, dtype: str | None = None) -> keras.Model:
    """Keras' test models: a Sequential of unnamed Dense layers (named dense_N by a per-process count)."""
    return keras.Sequential([keras.Input((3,), batch_size=2), *(keras.layers.Dense(u, dtype=dtype) for u in units)])


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights]


def test_two_unnamed_models_of_one_process_copy_as_load_weights_does(tmp_path):
    """dense_9 vs dense_10: their names differ; the structure is the same. copy_weights copies what
    load_weights loads, and says that each match rests on position."""
    original, new = randomized(sequential(4, 5)), sequential(4, 5)
    assert [layer.name for layer in original.layers] != [layer.name for layer in new.layers]
    report = warmstart.copy_weights(original, new)
    assert report.plan.ok and len(report.plan.positional) == 4 == report.plan.counts["copy"]
    assert all("by position: layer names Keras generated" in e.reason for e in report.plan.entries)
    original.save_weights(tmp_path / "original.weights.h5")
    reference = sequential(4, 5)
    reference.load_weights(tmp_path / "original.weights.h5")
    for got, want in zip(weights_of(new), weights_of(reference)):
        assert np.array_equal(got, want)


def test_keras_partial_load_scenario(tmp_path):
    """saving_lib_test.py::test_partial_load: a differently shaped last layer, then a new layer at the end.
    Keras needs skip_mismatch=True; warmstart says which rule keeps the initial value."""
    original = randomized(sequential(4, 5))
    original.save(tmp_path / "original.keras")
    new = sequential(4, 6)
    kept = np.asarray(new.layers[1].kernel)
    with pytest.raises(warmstart.PlanError, match="on_shape_mismatch: skip keeps the initial value"):
        warmstart.transfer(str(tmp_path / "original.keras"), new, str(tmp_path / "refused"))
    report = warmstart.transfer(str(tmp_path / "original.keras"), new, str(tmp_path / "a"),
                                rules={"on_shape_mismatch": "skip"})
    assert report.plan.counts == {"copy": 2, "cast": 0, "init": 0, "skip": 2, "error": 0}
    assert all(e.positional for e in report.plan.transferred)
    for got, want in zip(new.layers[0].get_weights(), original.layers[0].get_weights()):
        assert np.array_equal(got, want)
    assert np.array_equal(np.asarray(new.layers[1].kernel), kept)
    longer = sequential(4, 5, 5)
    kept = np.asarray(longer.layers[2].kernel)
    with pytest.raises(warmstart.PlanError, match="on_missing: init"):
        warmstart.transfer(str(tmp_path / "original.keras"), longer, str(tmp_path / "refused"))
    report = warmstart.transfer(str(tmp_path / "original.keras"), longer, str(tmp_path / "b"),
                                rules={"on_missing": "init"})
    assert report.plan.counts["copy"] == 4 and report.plan.counts["init"] == 2
    for i in (0, 1):
        for got, want in zip(longer.layers[i].get_weights(), original.layers[i].get_weights()):
            assert np.array_equal(got, want)
    assert np.array_equal(np.asarray(longer.layers[2].kernel), kept)


DTYPES = ("float64", "float32", "float16", "bfloat16")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`:UserWarning")  # Keras' test model, as written
@pytest.mark.parametrize("save_format", ["keras", "weights.h5", "h5"])
def test_keras_load_weights_dtype_scenario(save_format, tmp_path):
    """saving_api_test.py::LoadWeightsTests::test_load_weights: every source dtype into every target dtype, from
    each file format (legacy .h5 holds no bfloat16: Keras' test leaves those pairs out too). Keras casts
    silently; warmstart casts when the rules say so, and what it loads is what Keras loads."""
    for source_dtype in DTYPES:
        src = randomized(keras.Sequential([keras.layers.Dense(5, input_shape=(3,), dtype=source_dtype),
                                           keras.layers.Softmax()]))
        path = tmp_path / f"{source_dtype}.{save_format}"
        if save_format == "weights.h5":
            src.save_weights(path)
        else:
            src.save(path)
        for dest_dtype in DTYPES:
            if save_format == "h5" and "bfloat16" in (source_dtype, dest_dtype):
                continue
            dest = keras.Sequential([keras.layers.Dense(5, input_shape=(3,), dtype=dest_dtype), keras.layers.Softmax()])
            rules = {"on_dtype_mismatch": "cast", "allow_lossy_cast": True}
            report = warmstart.transfer(str(path), dest, str(tmp_path / f"out-{source_dtype}-{dest_dtype}"),
                                        rules=rules)
            assert report.plan.ok and len(report.plan.positional) == 2
            reference = keras.Sequential([keras.layers.Dense(5, input_shape=(3,), dtype=dest_dtype),
                                          keras.layers.Softmax()])
            reference.load_weights(path)
            for got, want in zip(dest.weights, reference.weights):
                assert np.array_equal(np.asarray(got, "float32"), np.asarray(want, "float32")), (source_dtype, dest_dtype)


def renamed(prefix: str) -> keras.Model:
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, name=f"{prefix}_encoder")(inputs)
    h = keras.layers.LayerNormalization(name=f"{prefix}_norm")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name=f"{prefix}_head")(h))


def test_renamed_layers_fail_with_the_structure_hint_and_copy_with_match_structure(tmp_path):
    source = randomized(renamed("old"))
    source.save(tmp_path / "old.keras")
    renamed("new").save(tmp_path / "new.keras")
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(tmp_path / "old.keras"),
                           str(tmp_path / "new.keras"), str(tmp_path / "refused")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 1 and not (tmp_path / "refused").exists()
    assert "the source and the target have the same structure (6 Keras variables" in done.stderr
    assert "the rule 'match: structure' copies them by structure" in done.stderr
    (tmp_path / "rules.yaml").write_text("match: structure\n")
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", str(tmp_path / "old.keras"),
                           str(tmp_path / "new.keras"), str(tmp_path / "out"), "--rules", str(tmp_path / "rules.yaml"),
                           "--json"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["positional"] == 6 and all(v["positional"] for v in doc["variables"])
    assert "warning: 6 variable(s) matched by position, not by name ('new_encoder/kernel' <- 'old_encoder/kernel'" \
        in done.stderr
    warm, reference = renamed("new"), renamed("new")
    warm.load_weights(tmp_path / "out" / "model.weights.h5")
    reference.load_weights(tmp_path / "old.keras")  # Keras matches by structure, whatever the names
    for got, want, original in zip(warm.weights, reference.weights, source.weights):
        assert np.array_equal(np.asarray(got), np.asarray(want)) and np.array_equal(np.asarray(got), np.asarray(original))


def test_another_structure_gets_no_structure_hint(tmp_path):
    renamed("old").save(tmp_path / "old.keras")
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(2, name="new_head")(keras.layers.Dense(8, name="x")(inputs)))
    plan = warmstart.plan(str(tmp_path / "old.keras"), other)
    assert not plan.ok and plan.hint is None and "match: structure" not in plan.failure_message()


def test_an_inserted_named_layer_shifts_nothing_in_an_unnamed_neighbourhood(tmp_path):
    """Named layers match by name even between unnamed ones: the new named layer keeps its initial value, the
    named ones around it get their own weights."""
    def model(inserted: bool) -> keras.Model:
        inputs = keras.Input((4,))
        h = keras.layers.Dense(4, name="encoder")(inputs)
        if inserted:
            h = keras.layers.Dense(4, name="adapter")(h)
        return keras.Model(inputs, keras.layers.Dense(4, name="head")(h))

    source = randomized(model(False))
    source.save_weights(tmp_path / "source.weights.h5")
    target = model(True)
    adapter = [np.asarray(w) for w in target.get_layer("adapter").weights]
    report = warmstart.transfer(str(tmp_path / "source.weights.h5"), target, str(tmp_path / "out"),
                                rules={"on_missing": "init"})
    assert report.plan.ok and not report.plan.positional
    for name in ("encoder", "head"):
        for got, want in zip(target.get_layer(name).weights, source.get_layer(name).weights):
            assert np.array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(target.get_layer("adapter").weights, adapter):
        assert np.array_equal(np.asarray(got), want)


def submodel() -> keras.Model:
    """An unnamed functional model (Keras names it functional_N) holding a layer the user named."""
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(4, name="proj")(inputs))


def two_submodels(created_in_reverse: bool = False) -> keras.Model:
    """Two unnamed sub-models whose layers share a name: only the names Keras counted for the sub-models
    (functional, functional_1) tell them apart, and the order they were created in decides which is which."""
    made = [submodel(), submodel()]
    first, second = made[::-1] if created_in_reverse else made
    x = keras.Input((4,))
    return keras.Model(x, second(first(x)))


@pytest.mark.parametrize("source_file", ["keras", "weights.h5", "h5"])
def test_sub_models_keras_named_in_another_order_copy_as_load_weights_does(tmp_path, source_file):
    """The new model's sub-models were created in the other order: 'functional_1/proj/kernel' is the first one
    there and the second one in the source. Matched by place and flagged, each gets its own weights."""
    keras.backend.clear_session()  # the counts of a new process: functional, functional_1
    original = randomized(two_submodels())
    save = original.save_weights if source_file == "weights.h5" else original.save
    save(tmp_path / f"original.{source_file}")
    keras.backend.clear_session()
    new = two_submodels(created_in_reverse=True)
    assert [layer.name for layer in new.layers[1:]] == ["functional_1", "functional"]
    new.save(tmp_path / "new.keras")
    report = warmstart.transfer(str(tmp_path / f"original.{source_file}"), str(tmp_path / "new.keras"),
                                str(tmp_path / "out"))
    assert len(report.plan.positional) == 4 == report.plan.counts["copy"]
    new.load_weights(tmp_path / "out" / "model.weights.h5")
    for got, want in zip(weights_of(new), weights_of(original)):
        assert np.array_equal(got, want)
    live = two_submodels(created_in_reverse=True)
    assert len(warmstart.copy_weights(original, live).plan.positional) == 4
    for got, want in zip(weights_of(live), weights_of(original)):
        assert np.array_equal(got, want)
