"""The warm-start flow's verify step (a real temporary Prefect API): between transfer and upload, the staged output's
parity certificate; it fails the run before anything is uploaded (verify: fail), or is published with the output
(verify: warn); the certificate is a table artifact, in the summary, the manifest and the published event.

The example data is the demo's: a TF1 BERT-like checkpoint into a renamed TF1 template, whose graphs both compute
a pooled output from the same hidden states (the declared pair ``pooled:0``).
"""

from __future__ import annotations

import json

import pytest
from servers import published_event
from test_flow import read_api, task_runs

from warmstart.examples import EXAMPLE_RULES, EXAMPLE_VERIFY, write_example_set

pytestmark = [pytest.mark.integration]

# The pooler is kept at the template's initial value: the pooled outputs then differ.
WITHOUT_POOLER = {**EXAMPLE_RULES, "rename": [[r"model/(embeddings|encoder)/(.*)", r"bert/\1/\2"],
                                              [r"(head|model/pooler)/.*", None]], "verify": EXAMPLE_VERIFY}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def _run(example, output, rules, verify):
    from warmstart.flows.warm_start import warm_start

    state = warm_start(source=example.source, target=example.target, output=str(output), rules=rules, verify=verify,
                       return_state=True)
    return state, state.state_details.flow_run_id


def _artifacts(run_id) -> dict:
    """The run's artifacts by key, each key's latest version."""
    _, _, artifacts = read_api(run_id)
    return {a.key: a for a in sorted(artifacts, key=lambda a: a.created)}


def test_the_flow_certifies_before_it_uploads(prefect_api, example, tmp_path):
    state, run_id = _run(example, tmp_path / "out", {**EXAMPLE_RULES, "verify": EXAMPLE_VERIFY}, "fail")
    summary = state.result()
    assert summary["verify"]["verdict"] == "passed" and summary["verify"]["counts"]["pair"] == 1
    assert summary["verify"]["output"] == (tmp_path / "out").as_uri()  # where it is published, not the staging
    manifest = json.loads((tmp_path / "out" / "warmstart.json").read_text())
    assert manifest["verify"]["verdict"] == "passed" and manifest["verify"]["digest"] == summary["digest"]
    names = [t.name.rsplit("-", 1)[0] for t in sorted(task_runs(run_id), key=lambda t: t.start_time)]
    assert names.index("transfer") < names.index("verify") < names.index("upload"), names
    artifacts = _artifacts(run_id)
    rows = artifacts["warm-start-certificate"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert rows[0]["verdict"] == "passed" and rows[0]["target"] == "pooled:0"
    assert "certificate passed" in artifacts["warm-start-summary"].data
    plan_table = artifacts["warm-start-plan"].data  # the latest version: with what the certificate says
    plan_table = json.loads(plan_table) if isinstance(plan_table, str) else plan_table
    assert list(plan_table[0])[:3] == ["target", "action", "verified"]
    verified = {r["target"]: r["verified"] for r in plan_table}
    assert verified["model/pooler/dense/kernel"] == verified["model/encoder/layer_1/output/dense/bias"] == "passed"
    assert verified["head/dense/kernel"] == ""  # what the pooled output does not read
    event = published_event(summary["output"])
    assert event is not None and event.payload["verify"]["verdict"] == "passed"


def test_a_failed_certificate_fails_the_run_and_nothing_is_uploaded(prefect_api, example, tmp_path):
    state, run_id = _run(example, tmp_path / "out", WITHOUT_POOLER, "fail")
    assert state.is_failed()
    with pytest.raises(Exception, match="first failure: pair 'pooled:0' differs"):
        state.result()
    assert not (tmp_path / "out").exists()
    assert "upload" not in {t.name.rsplit("-", 1)[0] for t in task_runs(run_id)}
    rows = _artifacts(run_id)["warm-start-certificate"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert rows[0]["verdict"] == "FAILED"


def test_verify_warn_publishes_the_output_with_its_failed_certificate(prefect_api, example, tmp_path):
    state, _ = _run(example, tmp_path / "out", WITHOUT_POOLER, "warn")
    summary = state.result()
    assert summary["verify"]["verdict"] == "failed" and (tmp_path / "out" / "warmstart.json").exists()
    assert json.loads((tmp_path / "out" / "warmstart.json").read_text())["verify"]["verdict"] == "failed"
    assert published_event(summary["output"]).payload["verify"]["verdict"] == "failed"


def test_verify_is_a_form_field_and_refused_with_shards(prefect_api, example, tmp_path):
    from warmstart.flows.warm_start import warm_start

    schema = warm_start.parameters.model_dump()["properties"]["verify"]
    assert schema["enum"] == ["off", "fail", "warn"] and schema["default"] == "off"
    state = warm_start(source=example.source, target=example.target, output=str(tmp_path / "out"),
                       rules=EXAMPLE_RULES, verify="fail", shards=2, return_state=True)
    assert state.is_failed() and not (tmp_path / "out").exists()
    with pytest.raises(Exception, match="verify certifies a transfer made in one process"):
        state.result()
