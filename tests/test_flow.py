"""The warm-start flow, in-process against a real (temporary) Prefect API: local files, S3 through
moto configured only by the AWS variables, GCS through the emulator, a transient fault, a secret."""

from __future__ import annotations

import json
from pathlib import Path

import builders
import fsspec
import numpy as np
import pytest
from servers import FaultyProxy, clear_fs_caches, published_event, upload_dir

from warmstart.examples import EXAMPLE_RULES, write_example_set
from warmstart.planning.report import human_bytes

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def request(**fields):
    """The flow's parameters: the example's rules unless given."""
    return {"rules": EXAMPLE_RULES, **fields}


def run_flow(**fields):
    """Run the flow; returns (summary, flow_run_id)."""
    from warmstart.flows.warm_start import warm_start

    state = warm_start(**request(**fields), return_state=True)
    return state.result(), state.state_details.flow_run_id


def source_values(example):
    return builders.load_values(next(Path(example.source).glob("*.index")).with_suffix(""))


def assert_warm_started(local_dir: Path, example):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(local_dir))
    assert prefix, f"no checkpoint found in {local_dir}"
    got = builders.load_values(prefix)
    src = source_values(example)
    np.testing.assert_array_equal(got["model/encoder/layer_1/output/dense/kernel"],
                                  src["bert/encoder/layer_1/output/dense/kernel"])
    return got


def read_api(flow_run_id):
    """Logs, artifacts and the stored parameters of a flow run, read back through the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return run, logs, artifacts


def task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_local_run_publishes_a_checkpoint_tf_loads_and_its_artifacts(prefect_api, example, tmp_path):
    summary, run_id = run_flow(source=example.source, target=example.target, output=str(tmp_path / "out"))
    assert summary["status"] == "ok" and summary["strategy"] == "stream"
    assert summary["unchecked"] == []  # plain copies: every tensor read whole, its checksum verified
    assert_warm_started(tmp_path / "out", example)
    run, _, artifacts = read_api(run_id)
    assert run.name == "warm-start pretrained -> out"
    by_key = {a.key: a for a in artifacts}
    assert {"warm-start-plan", "warm-start-summary", "warm-start-output", "warm-start-progress"} <= set(by_key)
    plan_rows = by_key["warm-start-plan"].data
    plan_rows = json.loads(plan_rows) if isinstance(plan_rows, str) else plan_rows
    assert any(r["target"] == "model/embeddings/word_embeddings" and r["action"] == "skip" for r in plan_rows)
    assert list(plan_rows[0]) == ["target", "action", "source", "shape", "dtype", "reason"]
    actions = [r["action"] for r in plan_rows]
    assert actions == sorted(actions, key=["error", "skip", "init", "cast", "copy", "unused"].index)
    assert "unused" in actions  # the source's optimizer slots and step counter, listed last
    assert "coverage" in by_key["warm-start-summary"].data
    assert by_key["warm-start-progress"].data == 100.0
    assert by_key["warm-start-progress"].description.startswith(f"done: {human_bytes(summary['bytes_read'])} read")


def test_rerun_uses_the_local_cache_for_remote_sources_only(prefect_api, example, s3_server, s3_bucket, monkeypatch,
                                                            tmp_path):
    """From S3 the second run downloads nothing; a local source's tensors are never copied into the cache."""
    from warmstart.cache import default_cache_dir

    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/cached")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    first, _ = run_flow(source=f"{s3_bucket}/cached", target=example.target, output=str(tmp_path / "a"))
    second, _ = run_flow(source=f"{s3_bucket}/cached", target=example.target, output=str(tmp_path / "b"))
    assert not first["source_tensors_cached"] and first["bytes_read"] > 0
    assert second["source_index_cached"] and second["source_tensors_cached"] and second["bytes_read"] == 0
    before = set(default_cache_dir().rglob("tensors-*"))
    local, _ = run_flow(source=example.source, target=example.target, output=str(tmp_path / "c"))
    assert not local["source_tensors_cached"] and local["bytes_read"] > 0  # read in place by the transfer
    assert set(default_cache_dir().rglob("tensors-*")) == before


def test_dry_run_publishes_the_plan_and_writes_nothing(prefect_api, example, tmp_path):
    """A dry run whose plan fails ends Failed, with its plan and summary artifacts; an ok one completes."""
    from warmstart.flows.warm_start import warm_start

    out = tmp_path / "out"
    state = warm_start(**request(source=example.source, target=example.target, output=str(out), rules=None,
                                 dry_run=True), return_state=True)
    assert state.is_failed() and "dry run: the plan does not satisfy the rules" in state.message
    _, _, artifacts = read_api(state.state_details.flow_run_id)
    by_key = {a.key: a for a in artifacts}
    assert "dry run (failed)" in by_key["warm-start-summary"].data and "warm-start-plan" in by_key
    summary, _ = run_flow(source=example.source, target=example.target, output=str(out), dry_run=True)
    assert summary["status"] == "dry run (ok)"
    assert not out.exists()


def test_failing_plan_fails_the_run_with_the_plans_message_said_once(prefect_api, example, tmp_path):
    """The run fails with the plan's message; its logs say it once, in one line (no traceback, no repetition by
    the flow or the state lines)."""
    from prefect.logging.handlers import APILogHandler

    from warmstart import PlanError
    from warmstart.flows.warm_start import warm_start

    state = warm_start(**request(source=example.source, target=example.target, output=str(tmp_path / "out"),
                                 rules=None), return_state=True)
    with pytest.raises(PlanError, match="does not satisfy the rules: 36 problem.*warm-start-plan artifact"):
        state.result()
    assert not (tmp_path / "out").exists()
    APILogHandler().flush()
    _, logs, _ = read_api(state.state_details.flow_run_id)
    saying = [log.message for log in logs if "does not satisfy the rules" in log.message]
    assert len(saying) == 1 and saying[0].startswith("failed: PlanError: "), saying
    assert not [log.message for log in logs if "Traceback" in log.message or "\n" in log.message]


def test_on_s3_configured_only_by_the_aws_variables(prefect_api, example, s3_server, s3_bucket, monkeypatch,
                                                     tmp_path):
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/pretrained")
    upload_dir(fs, Path(example.target), f"{s3_bucket}/new-model-init")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    summary, _ = run_flow(source=f"{s3_bucket}/pretrained", target=f"{s3_bucket}/new-model-init",
                          output=f"{s3_bucket}/warm/1")
    assert summary["output"] == f"{s3_bucket}/warm/1"
    local = tmp_path / "dl"
    fs.get(f"{s3_bucket}/warm/1/", str(local), recursive=True)
    assert_warm_started(local, example)


def test_on_gcs_through_the_emulator(prefect_api, example, gcs_server, gcs_bucket, monkeypatch, tmp_path):
    for key, value in gcs_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    fs = fsspec.filesystem("gcs", **gcs_server.storage_options())
    upload_dir(fs, Path(example.source), f"{gcs_bucket}/pretrained")
    upload_dir(fs, Path(example.target), f"{gcs_bucket}/new-model-init")
    summary, _ = run_flow(source=f"{gcs_bucket}/pretrained", target=f"{gcs_bucket}/new-model-init",
                          output=f"{gcs_bucket}/warm")
    assert summary["status"] == "ok"
    local = tmp_path / "dl"
    local.mkdir()
    for path in fs.ls(f"{gcs_bucket}/warm", detail=False):
        fs.get_file(path, str(local / Path(path).name))
    assert_warm_started(local, example)


def test_transient_fault_is_retried_and_the_output_is_identical(prefect_api, example, s3_server, s3_bucket,
                                                                 tmp_path):
    from prefect.blocks.system import Secret

    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/pretrained")
    baseline, _ = run_flow(source=example.source, target=example.target, output=str(tmp_path / "baseline"))
    secret_key = "SECRET-do-not-leak-7f3a9c"
    # S3's "500 InternalError, please try again" is transient. s3fs does not retry it and botocore's
    # retries are off here, so the fetch-tensors task fails once and Prefect's transient-only retry
    # runs it again. (s3fs absorbs SlowDown itself, in nested retry loops of up to 25 attempts.)
    with FaultyProxy(s3_server.endpoint_url, failures=1, status=500, code="InternalError",
                     message="We encountered an internal error. Please try again.") as proxy:
        options = {"key": "testing", "secret": secret_key,
                   "client_kwargs": {"endpoint_url": proxy.endpoint_url, "region_name": "us-east-1"},
                   "config_kwargs": {"retries": {"total_max_attempts": 1}}}
        Secret(value=json.dumps(options)).save("faulty-s3", overwrite=True)
        clear_fs_caches()
        summary, run_id = run_flow(source=f"{s3_bucket}/pretrained", target=example.target,
                                   output=str(tmp_path / "faulty"), credentials_block="secret/faulty-s3")
    assert proxy.failed == 1, "the proxy should have failed one ranged read"
    assert summary["status"] == "ok"
    # The fetch-tensors task failed, was retried, and the result is byte-identical to the clean run.
    run, logs, artifacts = read_api(run_id)
    runs = {t.name.rsplit("-", 1)[0]: t.run_count for t in task_runs(run_id)}
    assert runs["fetch-tensors"] == 2 and runs["fetch-index"] == 1 and runs["upload"] == 1, runs
    for name in ("model.ckpt.index", "model.ckpt.data-00000-of-00001"):
        assert (tmp_path / "faulty" / name).read_bytes() == (tmp_path / "baseline" / name).read_bytes()
    assert baseline["counts"] == summary["counts"]
    # The secret is nowhere: not in the stored parameters, logs, artifacts or the manifest.
    stored = json.dumps(run.parameters, default=str)
    texts = [stored, *(log.message for log in logs), *(json.dumps(a.data, default=str) for a in artifacts),
             (tmp_path / "faulty" / "warmstart.json").read_text()]
    assert not [t for t in texts if secret_key in t]
    assert "secret/faulty-s3" in stored


def test_validation_and_corrupt_data_are_not_retried(prefect_api, example, tmp_path):
    import shutil

    from warmstart import CorruptCheckpointError
    from warmstart.formats.bundle import BundleReader

    src = tmp_path / "src"
    shutil.copytree(example.source, src)
    entry = BundleReader(str(src)).records["bert/encoder/layer_0/output/dense/kernel"].entry
    data = next(src.glob("*.data-*"))
    raw = bytearray(data.read_bytes())
    raw[entry.offset] ^= 0xFF
    data.write_bytes(bytes(raw))
    from warmstart.flows.warm_start import warm_start

    state = warm_start(**request(source=str(src), target=example.target, output=str(tmp_path / "out")),
                       return_state=True)
    assert state.is_failed()
    with pytest.raises(CorruptCheckpointError):
        state.result()
    runs = {t.name.rsplit("-", 1)[0]: t.run_count for t in task_runs(state.state_details.flow_run_id)}
    assert runs["fetch-tensors"] == 1, runs  # corrupt data is not transient: no retry
    assert not (tmp_path / "out").exists()


def test_aws_credentials_block(prefect_api, example, s3_server, s3_bucket, tmp_path):
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/pretrained")
    AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                   aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url)
                   ).save("moto", overwrite=True)
    clear_fs_caches()
    summary, _ = run_flow(source=f"{s3_bucket}/pretrained", target=example.target, output=f"{s3_bucket}/warm",
                          credentials_block="aws-credentials/moto")
    assert summary["status"] == "ok" and fs.exists(f"{s3_bucket}/warm/warmstart.json")


def test_positional_matches_are_warned_in_the_logs_and_the_summary(prefect_api, tmp_path):
    """A TF2 checkpoint of a Sequential Keras model into a .keras target: its recorded names begin with the
    model's counted name, so it is matched through list indices."""
    import keras
    import tensorflow as tf

    def model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                                 keras.layers.Dense(2, name="head")])

    tf.train.Checkpoint(model=model()).write(str(tmp_path / "src" / "ckpt"))
    model().save(tmp_path / "target.keras")
    summary, run_id = run_flow(source=str(tmp_path / "src"), target=str(tmp_path / "target.keras"),
                               output=str(tmp_path / "out"), rules=None, dry_run=True)
    assert summary["positional"] == 4
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # run logs reach the API in batches
    _, logs, artifacts = read_api(run_id)
    assert any("4 variable(s) matched by position" in log.message for log in logs), [log.message for log in logs]
    report = next(a for a in artifacts if a.key == "warm-start-summary")
    assert "matched by position, not by name ('hidden/kernel' <- 'model/_functional/_operations/1/_kernel'" in \
        report.data


def test_the_logs_say_what_each_stage_did_and_a_published_event_is_emitted(prefect_api, example, tmp_path):
    """The Logs tab: the source, the plan's summary, the tensors, the transfer's bytes, the output URL,
    each with its seconds; the event warmstart.checkpoint.published for a training deployment to
    trigger on, with the output as resource and the manifest's figures."""
    from prefect.logging.handlers import APILogHandler

    summary, run_id = run_flow(source=example.source, target=example.target, output=str(tmp_path / "out"))
    APILogHandler().flush()
    _, logs, _ = read_api(run_id)
    messages = "\n".join(log.message for log in logs)
    for expected in ("source file://", f"plan ok (digest {summary['digest'][:12]}): ", "tensors: ",
                     "strategy stream: ", " written", f"published {summary['output']}"):
        assert expected in messages, (expected, messages)
    assert all(line.endswith(" s)") for line in messages.splitlines() if line.startswith("published"))
    event = published_event(summary["output"])
    assert event is not None, "no warmstart.checkpoint.published event for this output"
    assert event.resource.id == f"warmstart.checkpoint.{summary['output']}"
    assert event.related[0].role == "source" and event.payload["coverage"] == summary["coverage"]
    assert event.payload["bytes_written"] > 0 and event.payload["manifest"] == summary["manifest"]


def test_the_parameters_are_flat_form_fields_and_conflicts_fail_before_any_task(prefect_api, example, tmp_path):
    from prefect.utilities.callables import parameter_schema

    from warmstart.flows.warm_start import warm_start

    schema = parameter_schema(warm_start.fn).model_dump()
    props = schema["properties"]
    assert {"source", "target", "output", "rules", "rules_url", "strategy", "dry_run", "overwrite",
            "credentials_block", "shards", "dask_address"} <= set(props)
    assert set(schema["required"]) == {"source", "target", "output"}
    assert props["output"]["title"] == "output" and "Must be empty unless" in props["output"]["description"]
    state = warm_start(**request(source=example.source, target=example.target, output=str(tmp_path / "out"),
                                 rules_url=example.rules), return_state=True)
    assert state.is_failed() and "either inline rules or a rules file URL" in state.message
    assert not task_runs(state.state_details.flow_run_id)  # failed before fetching anything


def test_two_runs_into_one_output_at_once_exactly_one_publishes(prefect_api, example, tmp_path):
    """Both pass validation (the output is empty then); they publish in turn, so the second finds the
    first's output and fails as "not empty"; the output is one run's, whole."""
    from concurrent.futures import ThreadPoolExecutor

    from warmstart.flows.warm_start import warm_start

    out = tmp_path / "shared"

    def run(_):
        return warm_start(**request(source=example.source, target=example.target, output=str(out)),
                          return_state=True)

    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(run, range(2)))
    done = [s for s in states if s.is_completed()]
    failed = [s for s in states if s.is_failed()]
    assert len(done) == 1 and len(failed) == 1, [s.message for s in states]
    assert "not empty" in failed[0].message
    manifest = json.loads((out / "warmstart.json").read_text())
    assert manifest["plan"]["status"] == "ok"
    assert_warm_started(out, example)


def test_a_run_waits_while_another_holds_its_output(prefect_api, example, tmp_path):
    """The turn-taking itself: while the output's lock is held, a run transfers but does not publish: its
    transfer task completes, its upload task does not start, nothing appears at the output; once the lock is
    free it publishes."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from warmstart.flows.warm_start import _one_publisher, warm_start

    out = tmp_path / "held-output"

    def tasks() -> dict[str, str]:
        """The run's task runs by name (``transfer``, ``upload``, ...): their state types."""
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"-> {out.name}")))
        return {r.name.rsplit("-", 1)[0]: r.state_type.value for r in runs if r.state_type is not None}

    with ThreadPoolExecutor(1) as pool:
        with _one_publisher(str(out)):
            future = pool.submit(warm_start, **request(source=example.source, target=example.target,
                                                         output=str(out)), return_state=True)
            deadline = time.monotonic() + 180  # the transfer takes a few seconds; generous for a loaded machine
            while tasks().get("transfer") != "COMPLETED":
                assert not future.done(), future.result().message
                assert time.monotonic() < deadline, f"no completed transfer task: {tasks()}"
                time.sleep(0.2)
            time.sleep(2)  # the run's next step is the upload, under the lock: it must still be waiting
            assert not future.done() and "upload" not in tasks() and not out.exists(), tasks()
        state = future.result(timeout=120)
    assert state.is_completed() and (out / "warmstart.json").is_file()
    assert tasks().get("upload") == "COMPLETED"


def test_transforms_from_s3_fetch_every_source_they_read(prefect_api, s3_server, s3_bucket, monkeypatch, tmp_path):
    """The flow downloads the tensors its plan reads, a transform's too (a concat's every source): the
    transfer then runs from the local copy."""
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=np.float32).reshape(1, 3)
    builders.tf1_checkpoint(tmp_path / "src", {"a": a, "b": b, "c": np.ones(4, np.float32)})
    builders.tf1_checkpoint(tmp_path / "tpl", {"joint": np.zeros((3, 3), np.float32), "c2": np.zeros(2, np.float32)})
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, tmp_path / "src", f"{s3_bucket}/src")
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    clear_fs_caches()
    rules = {"transforms": [{"target": "joint", "concat": {"axis": 0, "sources": ["a", "b"]}},
                            {"target": "c2", "from": "c", "overlap": True}]}
    summary, _ = run_flow(source=f"{s3_bucket}/src", target=str(tmp_path / "tpl"), output=str(tmp_path / "out"),
                          rules=rules)
    assert summary["status"] == "ok" and summary["counts"]["remap"] == 2
    got = builders.load_values(tmp_path / "out" / "model.ckpt")
    np.testing.assert_array_equal(got["joint"], np.concatenate([a, b]))
    np.testing.assert_array_equal(got["c2"], np.ones(2, np.float32))


def test_the_summary_says_which_source_tensors_were_read_in_part(prefect_api, tmp_path):
    """An overlap copy reads rows 0:2 of a 4-row source: its CRC32C (of the whole tensor) cannot be checked."""
    builders.tf1_checkpoint(tmp_path / "src", {"c": np.ones(4, np.float32)})
    builders.tf1_checkpoint(tmp_path / "tpl", {"c2": np.zeros(2, np.float32)})
    summary, run_id = run_flow(source=str(tmp_path / "src"), target=str(tmp_path / "tpl"),
                               output=str(tmp_path / "out"), rules={"transforms": [
                                   {"target": "c2", "from": "c", "overlap": True}]})
    assert summary["status"] == "ok" and summary["unchecked"] == [{"checkpoint": "source", "source": "main", "key": "c"}]
    assert json.loads((tmp_path / "out" / "warmstart.json").read_text())["unchecked"] == summary["unchecked"]
    _, _, artifacts = read_api(run_id)
    report = next(a for a in artifacts if a.key == "warm-start-summary")
    assert "1 tensor read in part: its checksum could not be verified (source 'c')" in report.data


class StallingServer:
    """A TCP server that accepts connections, reads what comes, and never answers: a hung storage endpoint."""

    def __enter__(self) -> str:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list = []

        def accept() -> None:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.held.append(conn)  # kept open, never written to

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_stalled_source_fails_its_task_at_the_timeout_and_is_not_retried(prefect_api, example, tmp_path):
    """A storage endpoint that never answers: fetch-index fails at WARMSTART_METADATA_TIMEOUT_SECONDS (a
    worker-side setting, read when the tasks are imported: hence a fresh process), not hours later."""
    import os
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    script = ("import sys; from warmstart.flows.warm_start import warm_start; "
              "s = warm_start(source=sys.argv[1], target=sys.argv[2], output=sys.argv[3], return_state=True); "
              "print('STATE', s.type.value, s.message)")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "WARMSTART_METADATA_TIMEOUT_SECONDS": "3"}
    with StallingServer() as url:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script, f"{url}/model.ckpt", example.target,
                               str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert "STATE FAILED" in output, output[-3000:]
    assert "Task run exceeded timeout of 3.0 second(s)" in output, output[-3000:]
    assert "Retry 1/" not in output, output[-3000:]  # one attempt: its time budget is spent
    assert elapsed < 120, elapsed
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, generated", [
    ("vermilion-bee", True), ("kappa5-efros", True), ("eta6-sabacche-h", True), ("tau-aquilae-nebula", True),
    ("nightly retrain", False), ("Nightly-BERT", False), ("bert-2026-12-05", False), ("warm-start a -> b", False),
])
def test_names_prefect_or_its_ui_made_up_are_replaced_and_a_callers_kept(name, generated):
    """The UI form makes up two- and three-part names (a Greek letter and digits, a star, often a suffix), the API
    two words: those runs get the readable name; a name a person chose stays."""
    from warmstart.flows.warm_start import _GENERATED_NAME

    assert bool(_GENERATED_NAME.fullmatch(name)) is generated
