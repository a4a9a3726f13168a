"""Several named sources (issue 11): an encoder from run A, a decoder from run B, the rest from a base model.

Every source and target is written by TensorFlow or Keras; every output is loaded back the way users do
(``tf.train.Checkpoint.restore``, ``tf.train.load_checkpoint``, ``Saver.restore``, ``model.load_weights``)
and each variable compared with the source the plan says fills it. The sources share variable names on
purpose: a value restored from the wrong checkpoint would pass no test.
"""

from __future__ import annotations

import json
from pathlib import Path

import builders
import fsspec
import numpy as np
import pytest
from servers import clear_fs_caches, published_event, upload_dir

import warmstart
from warmstart import PlanError, UsageError
from warmstart.cli import main as cli_main

SHAPES = {"encoder": (4, 8), "decoder": (8, 8), "head": (8, 3)}


def _values(seed: int) -> dict[str, np.ndarray]:
    """Weights of the little encoder-decoder: ``<layer>/w`` and ``<layer>/b``, random by ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer, (n_in, n_out) in SHAPES.items():
        out[f"{layer}/w"] = rng.standard_normal((n_in, n_out)).astype(np.float32)
        out[f"{layer}/b"] = rng.standard_normal((n_out,)).astype(np.float32)
    return out


def _module(values: dict[str, np.ndarray]):
    """A ``tf.Module`` with ``encoder``, ``decoder`` and ``head`` sub-modules holding ``values``."""
    import tensorflow as tf

    class Layer(tf.Module):
        def __init__(self, name, w, b):
            super().__init__(name=name)
            self.w, self.b = tf.Variable(w, name="w"), tf.Variable(b, name="b")

    class Net(tf.Module):
        def __init__(self):
            super().__init__(name="net")
            for layer in SHAPES:
                setattr(self, layer, Layer(layer, values[f"{layer}/w"], values[f"{layer}/b"]))

    return Net()


def _tf2_checkpoint(directory: Path, seed: int) -> str:
    import tensorflow as tf

    directory.mkdir(parents=True)
    checkpoint = tf.train.Checkpoint(model=_module(_values(seed)))
    _ = checkpoint.save_counter  # written too, so that a restore matches every object
    return checkpoint.write(str(directory / "ckpt"))


def _decoder_run(directory: Path, seed: int = 2) -> dict[str, np.ndarray]:
    """Run B: a TF1 checkpoint whose decoder is named ``dec/w``, ``dec/b`` (a rename rule maps them)."""
    values = _values(seed)
    builders.tf1_checkpoint(directory, {"dec/w": values["decoder/w"], "dec/b": values["decoder/b"]})
    return {"decoder/w": values["decoder/w"], "decoder/b": values["decoder/b"]}


def _three_source_rules(encoder_run: str, decoder_run: str, prefix: str = "model/") -> dict:
    return {
        "sources": {"encoder_run": encoder_run, "decoder_run": decoder_run},
        "fill_from": [[f"{prefix}encoder/.*", "encoder_run"], [f"{prefix}decoder/.*", "decoder_run"]],
        "rename": [[f"{prefix}decoder/(w|b)", r"dec/\1"]],
    }


def _expected(base: int = 0, encoder: int = 1, decoder: int = 2) -> dict[str, np.ndarray]:
    """What the merge must give: the encoder from run A, the decoder from run B, the head from the base."""
    out = {k: v for k, v in _values(base).items() if k.startswith("head/")}
    out.update({k: v for k, v in _values(encoder).items() if k.startswith("encoder/")})
    out.update({k: v for k, v in _values(decoder).items() if k.startswith("decoder/")})
    return out


@pytest.fixture
def merge(tmp_path):
    """TF2 checkpoints of the base (seed 0), run A (seed 1) and the target's template (seed 9); run B a TF1
    checkpoint (seed 2)."""
    paths = {"base": _tf2_checkpoint(tmp_path / "base", 0), "run_a": _tf2_checkpoint(tmp_path / "run_a", 1),
             "template": _tf2_checkpoint(tmp_path / "template", 9)}
    _decoder_run(tmp_path / "run_b")
    paths["run_b"] = str(tmp_path / "run_b")
    return paths


def _restored(output: Path) -> dict[str, np.ndarray]:
    """The output as a user restores it: ``tf.train.Checkpoint(model=net).restore(latest)``."""
    import tensorflow as tf

    net = _module(_values(5))
    tf.train.Checkpoint(model=net).restore(tf.train.latest_checkpoint(str(output))).assert_existing_objects_matched()
    return {f"{layer}/{v}": getattr(getattr(net, layer), v).numpy() for layer in SHAPES for v in ("w", "b")}


def _assert_merged(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_three_source_merge_streams_each_variable_from_the_source_the_plan_names(merge, tmp_path):
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    progress: list[tuple[int, int]] = []
    report = warmstart.transfer(merge["base"], merge["template"], str(tmp_path / "out"), rules=rules,
                                progress=lambda done, total, name: progress.append((done, total)))
    assert report.strategy == "stream"
    done = [d for d, _ in progress]  # counted over every source, in one pass
    assert done == sorted(done) and progress[-1] == (report.plan.transferred_bytes,) * 2
    _assert_merged(_restored(tmp_path / "out"), _expected())
    by_target = {e.target: e for e in report.plan.entries}
    assert by_target["model/encoder/w"].from_source == "encoder_run"
    assert by_target["model/decoder/w"].from_source == "decoder_run"
    assert by_target["model/decoder/w"].source == "dec/w"  # the rename applied within run B
    assert by_target["model/head/w"].from_source == "main"
    assert "source 'encoder_run' (fill_from[0])" in by_target["model/encoder/w"].reason
    # the same names in the base checkpoint: its encoder stays unused, listed per source
    doc = report.to_json()
    assert "model/encoder/w" in doc["sources"]["main"]["unused"]
    assert "model/head/w" in doc["sources"]["encoder_run"]["unused"]
    manifest = json.loads((tmp_path / "out" / "warmstart.json").read_text())
    assert set(manifest["sources"]) == {"main", "encoder_run", "decoder_run"}
    assert manifest["sources"]["decoder_run"]["url"].endswith("run_b/model.ckpt")
    assert manifest["sources"]["encoder_run"]["index"] and manifest["source"] == manifest["sources"]["main"]
    assert [row["from"] for row in manifest["plan"]["variables"] if row["target"] == "model/decoder/b"] == [
        "decoder_run"]


def test_coverage_per_source_in_plan_json(merge, tmp_path, capsys):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(_three_source_rules(merge["run_a"], merge["run_b"])))
    assert cli_main(["plan", merge["base"], merge["template"], "--rules", str(rules_file), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = sum(n_in * n_out + n_out for n_in, n_out in SHAPES.values()) + 1  # and save_counter, kept
    parameters = {name: s["parameters"] for name, s in doc["sources"].items()}
    assert parameters == {"main": 8 * 3 + 3, "encoder_run": 4 * 8 + 8, "decoder_run": 8 * 8 + 8}
    assert doc["sources"]["encoder_run"]["coverage"] == pytest.approx(40 / total)
    assert sum(s["coverage"] for s in doc["sources"].values()) == pytest.approx(doc["coverage"])
    assert doc["coverage"] == pytest.approx((total - 1) / total)
    assert {row["target"]: row["from"] for row in doc["variables"]}["model/decoder/w"] == "decoder_run"
    assert doc["sources"]["decoder_run"]["kind"] == "tf1-checkpoint" and doc["sources"]["decoder_run"]["unused"] == []
    # the table a person reads: a from column and the coverage of each source
    assert cli_main(["plan", merge["base"], merge["template"], "--rules", str(rules_file)]) == 0
    text = capsys.readouterr().out
    assert "from" in text and "source 'decoder_run'" in text and "coverage" in text


def test_sources_given_on_the_command_line(merge, tmp_path, capsys):
    rules_file = tmp_path / "rules.json"
    rules = _three_source_rules("unused", "unused")
    del rules["sources"]
    rules_file.write_text(json.dumps(rules))
    code = cli_main(["transfer", merge["base"], merge["template"], str(tmp_path / "out"), "--rules", str(rules_file),
                     "--source", f"encoder_run={merge['run_a']}", "--source", f"decoder_run={merge['run_b']}",
                     "--no-prefect", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["sources"]["encoder_run"]["variables"] == 2
    _assert_merged(_restored(tmp_path / "out"), _expected())
    assert cli_main(["plan", merge["base"], merge["template"], "--source", "oops"]) == 2
    assert cli_main(["transfer", merge["base"], merge["template"], str(tmp_path / "flow-out"), "--prefect",
                     "--source", f"encoder_run={merge['run_a']}"]) == 2  # the flow takes sources from the rules
    assert "declare the sources under 'sources:'" in capsys.readouterr().err


def test_an_undeclared_source_name_is_a_plan_error(merge, tmp_path, capsys):
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    rules["fill_from"][0][1] = "encodr_run"
    plan = warmstart.plan(merge["base"], merge["template"], rules=rules)
    assert not plan.ok
    problems = "\n".join(plan.problems())
    assert "fill_from[0] 'model/encoder/.*' names source 'encodr_run', which is not declared" in problems
    assert "target 'model/encoder/w': fill_from[0] names source 'encodr_run'" in problems
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(rules))
    assert cli_main(["plan", merge["base"], merge["template"], "--rules", str(rules_file), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "failed"
    with pytest.raises(PlanError):
        warmstart.transfer(merge["base"], merge["template"], str(tmp_path / "out"), rules=rules)
    assert not (tmp_path / "out").exists()


def test_a_declared_source_that_fills_nothing_is_an_error(merge):
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    rules["sources"]["spare_run"] = merge["run_a"]
    plan = warmstart.plan(merge["base"], merge["template"], rules=rules)
    assert not plan.ok and any("source 'spare_run'" in p and "fills no target variable" in p for p in plan.problems())
    # the base filling nothing is one too: every target variable routed elsewhere
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    rules["fill_from"].append(["model/head/.*", "encoder_run"])
    plan = warmstart.plan(merge["base"], merge["template"], rules=rules)
    assert any("source 'main'" in p and "fills no target variable" in p for p in plan.problems())


def test_a_chosen_source_that_lacks_the_variable_is_an_error_naming_it_unless_a_fallback_is_declared(merge):
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    rules["fill_from"][1] = ["model/(decoder|head)/.*", "decoder_run"]  # run B has no head
    plan = warmstart.plan(merge["base"], merge["template"], rules=rules)
    head = {e.target: e for e in plan.entries}["model/head/w"]
    assert head.action == "error" and "'model/head/w' is not in source 'decoder_run' (fill_from[1])" in head.reason
    rules["fill_from"][1] = ["model/(decoder|head)/.*", ["decoder_run", "main"]]  # a declared fallback order
    plan = warmstart.plan(merge["base"], merge["template"], rules=rules)
    assert plan.ok, plan.problems()
    head = {e.target: e for e in plan.entries}["model/head/w"]
    assert head.from_source == "main" and "not in 'decoder_run'" in head.reason
    assert {e.target: e for e in plan.entries}["model/decoder/w"].from_source == "decoder_run"


def test_rules_refuse_main_as_a_name_and_sharded_transfers_refuse_several_sources(merge, tmp_path):
    with pytest.raises(UsageError, match="'main' names the source given as SOURCE"):
        warmstart.plan(merge["base"], merge["template"], rules={"sources": {"main": merge["run_a"]}})
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    with pytest.raises(UsageError, match="sharded transfers .* read one source"):
        warmstart.transfer(merge["base"], merge["template"], str(tmp_path / "out"), rules=rules, shards=2)
    assert not (tmp_path / "out").exists()


def test_an_output_inside_a_named_source_is_refused(merge):
    from warmstart.pipeline import check_output_for

    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    inside = str(Path(merge["run_b"]) / "out")
    with pytest.raises(warmstart.StorageError, match="input"):
        warmstart.transfer(merge["base"], merge["template"], inside, rules=rules)
    with pytest.raises(warmstart.StorageError, match="input"):  # the flow's validate step, before any fetch
        check_output_for(warmstart.plan(merge["base"], merge["template"], rules), inside)
    assert not Path(inside).exists()


def _run_a_on_s3(merge, s3_server, s3_bucket, monkeypatch) -> dict:
    """Run A uploaded to the moto server (reached through the AWS variables only); the merge's rules with it."""
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, Path(merge["run_a"]).parent, f"{s3_bucket}/run_a")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    return _three_source_rules(f"{s3_bucket}/run_a/ckpt", merge["run_b"])


def test_one_source_on_s3(merge, tmp_path, s3_server, s3_bucket, monkeypatch):
    rules = _run_a_on_s3(merge, s3_server, s3_bucket, monkeypatch)
    report = warmstart.transfer(merge["base"], merge["template"], str(tmp_path / "out"), rules=rules)
    _assert_merged(_restored(tmp_path / "out"), _expected())
    assert report.plan.sources["encoder_run"].origin.startswith("s3://")


# --- built targets: restore and assign -------------------------------------------------------------------------


def _tf1_merge(tmp_path) -> dict:
    """TF1 checkpoints with the same names in the base and run A; run B's decoder named ``dec/...``; a
    TF1 template (with its .meta) to build."""
    builders.tf1_checkpoint(tmp_path / "base", _values(0))
    builders.tf1_checkpoint(tmp_path / "run_a", _values(1))
    _decoder_run(tmp_path / "run_b")
    template = builders.tf1_checkpoint(tmp_path / "template", _values(9))
    return {"base": str(tmp_path / "base"), "run_a": str(tmp_path / "run_a"), "run_b": str(tmp_path / "run_b"),
            "meta": template["meta"]}


def _saver_restored(meta: str, prefix: str) -> dict[str, np.ndarray]:
    """The output as a TF1 user restores it: the target graph's ``Saver.restore``."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, prefix)
            return {v.op.name: session.run(v) for v in tf.compat.v1.global_variables()}


@pytest.mark.parametrize("strategy", ["restore", "assign"])
def test_three_source_merge_into_a_tf1_graph(tmp_path, strategy):
    paths = _tf1_merge(tmp_path)
    rules = _three_source_rules(paths["run_a"], paths["run_b"], prefix="")
    report = warmstart.transfer(paths["base"], paths["meta"], str(tmp_path / "out"), rules=rules, strategy=strategy)
    assert report.strategy == strategy
    _assert_merged(_saver_restored(paths["meta"], str(tmp_path / "out" / "model.ckpt")), _expected())


def _keras_model(seed: int):
    """Input(4) -> Dense "encoder" -> Dense "decoder" -> Dense "head", with the weights of ``_values(seed)``."""
    import keras

    inputs = keras.Input(shape=(4,), name="x")
    x = inputs
    for layer in SHAPES:
        x = keras.layers.Dense(SHAPES[layer][1], name=layer)(x)
    model = keras.Model(inputs, x)
    values = _values(seed)
    for layer in SHAPES:
        model.get_layer(layer).set_weights([values[f"{layer}/w"], values[f"{layer}/b"]])
    return model


def _keras_weights(model) -> dict[str, np.ndarray]:
    return {f"{layer}/{v}": w.numpy() for layer in SHAPES for v, w in zip("wb", model.get_layer(layer).weights)}


@pytest.mark.parametrize("strategy, run_a_kind", [("assign", "weights.h5"), ("assign", "tf2"), ("restore", "tf2"),
                                                  ("auto", "weights.h5")])
def test_three_source_merge_into_a_keras_model(tmp_path, strategy, run_a_kind):
    """The base a TF2 checkpoint of the Keras model, run A its .weights.h5 or TF2 checkpoint, run B a TF1
    checkpoint: into the new model's .keras file; loaded back with ``model.load_weights``."""
    import tensorflow as tf

    (tmp_path / "base").mkdir()
    tf.train.Checkpoint(model=_keras_model(0)).write(str(tmp_path / "base" / "ckpt"))
    if run_a_kind == "weights.h5":
        run_a = str(tmp_path / "run_a.weights.h5")
        _keras_model(1).save_weights(run_a)
    else:
        (tmp_path / "run_a").mkdir()
        run_a = tf.train.Checkpoint(model=_keras_model(1)).write(str(tmp_path / "run_a" / "ckpt"))
    _decoder_run(tmp_path / "run_b")
    _keras_model(9).save(str(tmp_path / "new.keras"))
    rules = _three_source_rules(run_a, str(tmp_path / "run_b"), prefix="")
    rules["rename"] = [["decoder/kernel", "dec/w"], ["decoder/bias", "dec/b"]]
    rules["fill_from"] = [["encoder/.*", "encoder_run"], ["decoder/.*", "decoder_run"]]
    report = warmstart.transfer(str(tmp_path / "base"), str(tmp_path / "new.keras"), str(tmp_path / "out"),
                                rules=rules, strategy=strategy)
    assert report.strategy == ("assign" if strategy == "auto" else strategy)
    model = _keras_model(5)
    model.load_weights(str(tmp_path / "out" / "model.weights.h5"))
    _assert_merged(_keras_weights(model), _expected())


def test_restore_from_a_keras_weights_source_is_refused(tmp_path):
    import tensorflow as tf

    (tmp_path / "base").mkdir()
    tf.train.Checkpoint(model=_keras_model(0)).write(str(tmp_path / "base" / "ckpt"))
    _keras_model(1).save_weights(str(tmp_path / "run_a.weights.h5"))
    _keras_model(9).save(str(tmp_path / "new.keras"))
    rules = {"sources": {"encoder_run": str(tmp_path / "run_a.weights.h5")}, "fill_from": [["encoder/.*", "encoder_run"]]}
    with pytest.raises(UsageError, match="only assign works"):
        warmstart.transfer(str(tmp_path / "base"), str(tmp_path / "new.keras"), str(tmp_path / "out"), rules=rules,
                           strategy="restore")


def test_three_source_merge_into_a_keras_weights_template(tmp_path):
    """Keras weights files as base, run A and target (the Keras stream, no TF), run B a TF1 checkpoint."""
    _keras_model(0).save_weights(str(tmp_path / "base.weights.h5"))
    _keras_model(1).save_weights(str(tmp_path / "run_a.weights.h5"))
    _keras_model(9).save_weights(str(tmp_path / "new.weights.h5"))
    _decoder_run(tmp_path / "run_b")
    rules = {"sources": {"encoder_run": str(tmp_path / "run_a.weights.h5"), "decoder_run": str(tmp_path / "run_b")},
             "fill_from": [["encoder/.*", "encoder_run"], ["decoder/.*", "decoder_run"]],
             "rename": [["decoder/vars/0", "dec/w"], ["decoder/vars/1", "dec/b"]]}
    report = warmstart.transfer(str(tmp_path / "base.weights.h5"), str(tmp_path / "new.weights.h5"),
                                str(tmp_path / "out"), rules=rules)
    assert report.strategy == "stream"
    model = _keras_model(5)
    model.load_weights(str(tmp_path / "out" / "model.weights.h5"))
    _assert_merged(_keras_weights(model), _expected())


# --- the flow -------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_flow_fetches_and_reads_every_source(prefect_api, merge, tmp_path, s3_server, s3_bucket, monkeypatch):
    """The flow with run A on S3 (its index and tensors fetched into the cache like the source's) and run B
    local: the plan artifact has a from column, the manifest and the event name every source."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    from warmstart.flows.warm_start import warm_start

    rules = _run_a_on_s3(merge, s3_server, s3_bucket, monkeypatch)
    state = warm_start(source=merge["base"], target=merge["template"], output=str(tmp_path / "out"), rules=rules,
                       return_state=True)
    summary = state.result()
    assert summary["status"] == "ok"
    _assert_merged(_restored(tmp_path / "out"), _expected())
    assert summary["sources"]["encoder_run"]["url"] == f"{s3_bucket}/run_a/ckpt"
    manifest = json.loads((tmp_path / "out" / "warmstart.json").read_text())
    assert manifest["sources"]["encoder_run"]["url"] == f"{s3_bucket}/run_a/ckpt"  # not the cache's copy
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert "| encoder_run | `" in {a.key: a for a in artifacts}["warm-start-summary"].data  # coverage per source
    rows = {a.key: a for a in artifacts}["warm-start-plan"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert {r["target"]: r["from"] for r in rows if r["target"]}["model/encoder/w"] == "encoder_run"
    assert any(r["action"] == "unused" and r["from"] == "encoder_run" for r in rows)
    fetched = [t.name for t in runs]
    assert sum(name.startswith("fetch-tensors") for name in fetched) == 3
    assert any(name.startswith("fetch-source-indexes") for name in fetched)
    event = published_event(summary["output"])
    assert event is not None, "no warmstart.checkpoint.published event for this output"
    related = {r.id for r in event.related if r.role == "source"}
    assert f"warmstart.source.{s3_bucket}/run_a/ckpt" in related and len(related) == 3
    assert set(event.payload["sources"]) == {"main", "encoder_run", "decoder_run"}


def test_units_and_live_copies_refuse_several_sources(merge, tmp_path):
    from warmstart.formats.bundle import BundleReader
    from warmstart.strategies import split_units

    plan = warmstart.plan(merge["base"], merge["template"], rules=_three_source_rules(merge["run_a"], merge["run_b"]))
    with pytest.raises(UsageError, match="reads one source"):
        split_units(plan, BundleReader(merge["base"]), BundleReader(merge["template"]), str(tmp_path / "out"), 2)
    with pytest.raises(UsageError, match="declare source 'encoder_run', but it was not read"):
        warmstart.copy_weights(_keras_model(0), _keras_model(1), rules={"sources": {"encoder_run": merge["run_a"]}})


def test_a_block_transform_reads_from_the_chosen_source(merge, tmp_path):
    """A transform's source variable is looked up in the target's source (run B's dec/w), never in main."""
    rules = _three_source_rules(merge["run_a"], merge["run_b"])
    rules["transforms"] = [{"target": "model/decoder/w", "ops": [{"transpose": {"perm": [1, 0]}}]}]
    report = warmstart.transfer(merge["base"], merge["template"], str(tmp_path / "out"), rules=rules)
    entry = {e.target: e for e in report.plan.entries}["model/decoder/w"]
    assert entry.action == "remap" and entry.from_source == "decoder_run" and entry.source == "dec/w"
    expected = _expected()
    expected["decoder/w"] = expected["decoder/w"].T
    _assert_merged(_restored(tmp_path / "out"), expected)
    paths = _tf1_merge(tmp_path / "tf1")
    rules = _three_source_rules(paths["run_a"], paths["run_b"], prefix="")
    rules["transforms"] = [{"target": "decoder/w", "ops": [{"transpose": {"perm": [1, 0]}}]}]
    template = paths["meta"].removesuffix(".meta")  # its initializers need fed values: initial values from here
    warmstart.transfer(paths["base"], template, str(tmp_path / "tf1-out"), rules=rules, strategy="restore")
    _assert_merged(_saver_restored(paths["meta"], str(tmp_path / "tf1-out" / "model.ckpt")), expected)
