"""The warm-start flow executes the plan its validate step made: the rules read once, and an input that moves
on or changes after validation is either not read (the validated checkpoint is copied) or fails the run before
anything is published. Against a real (temporary) Prefect API; S3 through moto behind a logging proxy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import builders
import numpy as np
import pytest
import yaml
from servers import FaultyProxy, clear_fs_caches, published_event, upload_dir

from warmstart.errors import InputChangedError
from warmstart.examples import EXAMPLE_RULES, write_example_set

pytestmark = [pytest.mark.integration]

W = {"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "dense/bias": np.ones(3, np.float32)}
W_NEW = {k: v + 100 for k, v in W.items()}
ZERO = {k: np.zeros_like(v) for k, v in W.items()}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def _validated_then(change, **params):
    """The flow's own steps, with ``change()`` between validation and the copy: ``_validated`` (rules, indexes,
    validate), then ``_copy_and_publish`` (fetch tensors, transfer, upload). Returns the final state."""
    from prefect import flow

    from warmstart.flows.warm_start import WarmStartRequest, _copy_and_publish, _validated

    @flow(name="warm-start-with-a-change-after-validation")
    def validated_then_changed():
        request = WarmStartRequest(**params)
        index, named, plan = _validated(request, None)
        change()
        return plan, _copy_and_publish(request, plan, index, named, None)

    return validated_then_changed(return_state=True)


def _output_values(out: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return builders.load_values(tf.train.latest_checkpoint(str(out)))


def _on_s3(monkeypatch, endpoint: str, s3_server) -> None:
    for key, value in {**s3_server.env(), "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()


def test_a_rules_file_on_s3_is_fetched_once_per_run(prefect_api, example, s3_server, s3_bucket, monkeypatch,
                                                   tmp_path):
    from warmstart.flows.warm_start import warm_start

    s3 = s3_server.filesystem()
    s3.pipe(f"{s3_bucket}/rules.yaml", yaml.safe_dump(EXAMPLE_RULES).encode())
    with FaultyProxy(s3_server.endpoint_url, failures=0) as proxy:
        _on_s3(monkeypatch, proxy.endpoint_url, s3_server)
        summary = warm_start(source=example.source, target=example.target, output=str(tmp_path / "out"),
                             rules_url=f"{s3_bucket}/rules.yaml")
    reads = [path for method, path in proxy.log if method == "GET" and path.split("?")[0].endswith("/rules.yaml")]
    assert len(reads) == 1, proxy.log
    rules_pin = next(i for i in summary["inputs"] if i["role"] == "rules")
    assert rules_pin["url"].endswith("rules.yaml") and rules_pin["files"][0]["version"]["etag"]
    assert summary["status"] == "ok"


def test_the_flow_copies_the_validated_checkpoint_when_the_source_directory_moves_on(
        prefect_api, s3_server, s3_bucket, monkeypatch, tmp_path):
    """S3 source directory: after validation, a training job writes a newer checkpoint and moves the state
    file; the run fetches and copies the checkpoint it validated."""
    builders.tf1_checkpoint(tmp_path / "src", W, step=1)
    builders.tf1_checkpoint(tmp_path / "tpl", ZERO)
    s3 = s3_server.filesystem()
    upload_dir(s3, tmp_path / "src", f"{s3_bucket}/run")
    _on_s3(monkeypatch, s3_server.endpoint_url, s3_server)

    def newer_checkpoint():
        builders.tf1_checkpoint(tmp_path / "newer", W_NEW, step=2)
        upload_dir(s3, tmp_path / "newer", f"{s3_bucket}/run")  # model.ckpt-2.* and a state file naming it
        clear_fs_caches()

    state = _validated_then(newer_checkpoint, source=f"{s3_bucket}/run", target=str(tmp_path / "tpl"),
                            output=str(tmp_path / "out"))
    plan, summary = state.result()
    assert s3.cat(f"{s3_bucket}/run/checkpoint").decode().count("model.ckpt-2")  # it did move on
    np.testing.assert_array_equal(_output_values(tmp_path / "out")["dense/kernel"], W["dense/kernel"])
    manifest = json.loads((tmp_path / "out" / "warmstart.json").read_text())
    assert manifest["source"]["url"].endswith("run/model.ckpt-1") and manifest["digest"] == plan.digest


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_source_rewritten_after_validation_fails_the_run_before_publishing(
        prefect_api, s3_server, s3_bucket, monkeypatch, tmp_path, where):
    """The same checkpoint written again in place after validation (S3: the fetch refuses the new version;
    local: the transfer does): the run fails naming the source, and the output stays empty."""
    builders.tf1_checkpoint(tmp_path / "src", W, step=1)
    builders.tf1_checkpoint(tmp_path / "tpl", ZERO)
    s3 = s3_server.filesystem()
    source = str(tmp_path / "src")
    if where == "s3":
        upload_dir(s3, tmp_path / "src", f"{s3_bucket}/run")
        _on_s3(monkeypatch, s3_server.endpoint_url, s3_server)
        source = f"{s3_bucket}/run"

    def rewritten():
        time.sleep(0.01)  # a new mtime even on a coarse clock
        builders.tf1_checkpoint(tmp_path / "src", W_NEW, step=1)
        if where == "s3":
            upload_dir(s3, tmp_path / "src", f"{s3_bucket}/run")
            clear_fs_caches()

    state = _validated_then(rewritten, source=source, target=str(tmp_path / "tpl"), output=str(tmp_path / "out"))
    assert state.is_failed()
    with pytest.raises(InputChangedError, match="source 'main' .* changed after the plan was made"):
        state.result()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("changed", ["template", "named source"])
def test_a_template_or_named_source_replaced_after_validation_fails_before_publishing(
        prefect_api, tmp_path, changed):
    builders.tf1_checkpoint(tmp_path / "src", {"dense/kernel": W["dense/kernel"]})
    builders.tf1_checkpoint(tmp_path / "run_b", {"dense/bias": W["dense/bias"]})
    builders.tf1_checkpoint(tmp_path / "tpl", ZERO)
    rules = {"sources": {"run_b": str(tmp_path / "run_b")}, "fill_from": [["dense/bias", "run_b"]]}

    def replaced():
        time.sleep(0.01)
        if changed == "template":
            builders.tf1_checkpoint(tmp_path / "tpl", W)
        else:
            builders.tf1_checkpoint(tmp_path / "run_b", {"dense/bias": W_NEW["dense/bias"]})

    state = _validated_then(replaced, source=str(tmp_path / "src"), target=str(tmp_path / "tpl"),
                            output=str(tmp_path / "out"), rules=rules)
    who = "target" if changed == "template" else "source 'run_b'"
    with pytest.raises(InputChangedError, match=f"{who} .* changed after the plan was made"):
        state.result()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_digest_is_the_same_in_the_artifacts_the_event_the_json_and_the_manifest(prefect_api, example,
                                                                                      tmp_path):
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from warmstart.flows.warm_start import warm_start

    state = warm_start(source=example.source, target=example.target, output=str(tmp_path / "out"),
                       rules_url=example.rules, return_state=True)
    summary, run_id = state.result(), state.state_details.flow_run_id
    digest = summary["digest"]
    manifest = json.loads((tmp_path / "out" / "warmstart.json").read_text())
    assert manifest["digest"] == manifest["plan"]["digest"] == digest
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    by_key = {a.key: a for a in artifacts}
    assert digest in by_key["warm-start-plan"].description and digest in by_key["warm-start-summary"].data
    event = published_event(summary["output"])
    assert event is not None and event.payload["digest"] == digest
    # the same inputs planned by the CLI (another process, the engine): the same digest
    run = subprocess.run([sys.executable, "-m", "warmstart.cli", "plan", example.source, example.target, "--rules",
                          example.rules, "--json"], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout)["digest"] == digest
