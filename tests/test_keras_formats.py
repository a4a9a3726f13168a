"""One name per Keras variable, whatever holds it: every pair of formats of the same model matches with no rules.

Sources: the model's ``.keras`` file, ``.weights.h5``, sharded ``.weights.json``, legacy ``.h5`` (all written by
Keras), a TF2 checkpoint (``tf.train.Checkpoint(model=m).write``) named by its ``.keras`` file
(``source_structure``), and the live model. Targets: the new model's ``.keras`` file, its ``.weights.h5``
template, a ``py:`` builder and the live model. Every output is loaded the documented way
(``model.load_weights``) and holds every weight of the source, bit for bit, with no match flagged positional:
each model names all its layers (the BERT-like one through a backbone whose own name Keras generated).
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
from keras_models import bert_classifier, functional, nested, randomized  # noqa: E402

import warmstart  # noqa: E402
from warmstart.tables import table_from_trackable  # noqa: E402

MODELS = {"functional": functional, "bert_classifier": bert_classifier}
SOURCES = ["keras", "weights.h5", "weights.json", "legacy.h5", "tf2+structure"]
TARGETS = ["keras", "weights.h5", "builder", "live"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module", params=list(MODELS))
def written(request, tmp_path_factory):
    """The source model in every file format Keras and TF write, and the new model's target files."""
    import tensorflow as tf

    name, make = request.param, MODELS[request.param]
    d = tmp_path_factory.mktemp(name)
    source = randomized(make())
    source.save(d / "source.keras")
    source.save_weights(d / "source.weights.h5")
    source.save_weights(d / "source.weights.json", max_shard_size=0.000002)  # GB: several shards
    source.save(d / "source.h5")  # Keras 3 writes the legacy (Keras 2) layout for .h5
    tf.train.Checkpoint(model=source).write(str(d / "tf2" / "ckpt"))
    target = make()
    target.save(d / "target.keras")
    target.save_weights(d / "target.weights.h5")
    files = {"keras": d / "source.keras", "weights.h5": d / "source.weights.h5",
             "weights.json": d / "source.weights.json", "legacy.h5": d / "source.h5", "tf2+structure": d / "tf2" / "ckpt"}
    return {"name": name, "make": make, "dir": d, "source": source, "files": files}


def assert_same_weights(got: keras.Model, want: keras.Model) -> None:
    assert len(got.weights) == len(want.weights)
    for g, w in zip(got.weights, want.weights):
        assert np.array_equal(np.asarray(g), np.asarray(w)), w.path


def _target(written, kind):
    if kind in ("keras", "weights.h5"):
        return str(written["dir"] / f"target.{kind}")
    if kind == "builder":
        return f"py:keras_models:{written['name']}"
    return written["make"]()


@pytest.mark.slow
@pytest.mark.parametrize("target_kind", TARGETS)
@pytest.mark.parametrize("source_kind", SOURCES)
def test_every_pair_of_formats_of_one_model_matches_with_no_rules(written, source_kind, target_kind, tmp_path):
    rules = {"source_structure": str(written["dir"] / "source.keras")} if source_kind == "tf2+structure" else None
    target = _target(written, target_kind)
    out = tmp_path / "out"
    report = warmstart.transfer(str(written["files"][source_kind]), target, str(out), rules=rules)
    plan = report.plan
    assert plan.ok and plan.counts["copy"] == len(written["source"].weights), plan.failure_message()
    assert not plan.positional, [(e.target, e.reason) for e in plan.positional]
    loaded = written["make"]()
    loaded.load_weights(out / "model.weights.h5")  # the documented way
    assert_same_weights(loaded, written["source"])
    if target_kind == "live":
        assert_same_weights(target, written["source"])


def test_a_live_model_into_a_live_model(written):
    target = written["make"]()
    report = warmstart.copy_weights(written["source"], target)
    assert report.plan.ok and not report.plan.positional
    assert_same_weights(target, written["source"])


def test_a_live_model_given_as_a_source_is_a_usage_error_naming_copy_weights(written, tmp_path):
    for call in (lambda: warmstart.plan(written["source"], written["make"]()),
                 lambda: warmstart.transfer(written["source"], written["make"](), str(tmp_path / "out"))):
        with pytest.raises(warmstart.UsageError, match="not a Functional: a live model's or session's variables are "
                           "copied by warmstart.copy_weights or copy_variables"):
            call()
    assert not (tmp_path / "out").exists()


def test_every_format_names_a_variable_by_its_variable_path(written):
    """The display names are Keras' variable.path; the other keys are aliases (in --json too)."""
    source, d = written["source"], written["dir"]
    paths = {v.path for v in source.weights}
    live = table_from_trackable(source)
    assert set(live) == paths
    for kind in ("keras", "legacy.h5", "tf2+structure"):
        rules = {"source_structure": str(d / "source.keras")} if kind == "tf2+structure" else None
        table = warmstart.plan(str(written["files"][kind]), source, rules=rules).source
        assert {v.name for v in table.variables} >= paths, kind
    bare = warmstart.read_table(str(d / "source.weights.h5"))
    by_structure = {v.structure: v for v in live.variables}
    for v in bare.variables:  # layer/vars/N, the same layer names; its structure key is Keras' own
        assert v.name == by_structure[v.key].weights_path and v.name.rsplit("/", 2)[-2] == "vars"


@pytest.mark.parametrize("kind", ["keras", "legacy.h5"])
def test_inspect_lists_variable_paths_and_aliases(written, kind):
    """``inspect --json``: variable.path names, the other keys as aliases. (The BERT-like model's custom classes
    are registered in this process only, as a user's are in theirs: its file is inspected here.)"""
    if written["name"] == "functional":
        done = subprocess.run([sys.executable, "-m", "warmstart.cli", "inspect", str(written["files"][kind]),
                               "--json"], capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        variables = json.loads(done.stdout)["variables"]
    else:
        variables = warmstart.read_table(str(written["files"][kind])).to_json()["variables"]
    assert {v["name"] for v in variables} == {v.path for v in written["source"].weights}
    live = {v.name: v for v in table_from_trackable(written["source"]).variables}
    for v in variables:
        assert live[v["name"]].weights_path in v["aliases"], v
        if written["name"] == "functional" or kind == "keras":  # the legacy file of custom layers: names only
            assert live[v["name"]].structure in v["aliases"], v


def test_a_plain_nested_model_file_is_named_without_keras(tmp_path):
    """A .keras file of built-in layers (a Functional model nested in another) is named from its config.json
    by warmstart alone: TensorFlow and Keras are not imported."""
    model = nested()
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    code = ("import json, sys, warmstart; p = warmstart.plan(sys.argv[1], sys.argv[2]); "
            "print(json.dumps([p.ok, [e.target for e in p.entries], 'tensorflow' in sys.modules, "
            "'keras' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.weights.h5"), str(tmp_path / "m.keras")],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ok, names, tf_imported, keras_imported = json.loads(done.stdout)
    assert ok and set(names) == {v.path for v in model.weights} and not tf_imported and not keras_imported
