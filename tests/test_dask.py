"""Sharded transfers: units of work on a real Dask cluster (scheduler and worker processes), outputs read
by TensorFlow, a worker killed mid-run, a failing unit, S3 (moto) as source and output, resuming, the
CLI and the flow on a DaskTaskRunner."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import clear_fs_caches, upload_dir

import warmstart
from warmstart.examples import write_example_set
from warmstart.formats.bundle import BundleReader, BundleWriter, write_index
from warmstart.storage import resolve

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            Client(c, set_as_default=False) as client:
        yield c, client


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def reference(example, tmp_path_factory):
    """The single-process stream output (one data file)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    warmstart.transfer(example.source, example.target, str(out), rules=example.rules)
    return out


def tf_values(prefix) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def assert_same_tensors(out: Path, reference: Path) -> None:
    got, want = tf_values(out / "model.ckpt"), tf_values(reference / "model.ckpt")
    assert got.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def data_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("model.ckpt.data-*"))


def test_a_sharded_output_is_n_data_files_with_one_index_that_tf_reads(example, reference, tmp_path):
    out = tmp_path / "out"
    report = warmstart.transfer(example.source, example.target, str(out), rules=example.rules, shards=3)
    assert data_files(out) == [f"model.ckpt.data-0000{k}-of-00003" for k in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(data_files(out) + ["model.ckpt.index", "checkpoint",
                                                                               "warmstart.json"])
    assert BundleReader(str(out)).header.num_shards == 3
    sizes = [(out / name).stat().st_size for name in data_files(out)]
    assert min(sizes) > 0 and report.bytes_written == sum(sizes)
    assert_same_tensors(out, reference)
    manifest = json.loads((out / "warmstart.json").read_text())
    assert len(manifest["checkpoint"]["tensors"]) == len(tf_values(out / "model.ckpt"))
    _restore_with_tf1_saver(out / "model.ckpt", reference / "model.ckpt")


def _restore_with_tf1_saver(prefix: Path, reference: Path) -> None:
    import tensorflow as tf

    want = tf_values(reference)
    with tf.Graph().as_default():
        variables = {k: tf.compat.v1.get_variable(k, shape=v.shape, dtype=tf.as_dtype(v.dtype))
                     for k, v in want.items()}
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver(variables).restore(sess, str(prefix))
            for key, var in variables.items():
                np.testing.assert_array_equal(sess.run(var), want[key], err_msg=key)


def test_a_signature_target_lists_the_same_absent_variables_sharded_or_not(example, tmp_path):
    from warmstart.tables import signature_of

    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps(signature_of(example.target).to_json()))
    for name, shards in (("one", None), ("sharded", 3)):
        warmstart.transfer(example.source, str(signature), str(tmp_path / name), rules=example.rules, shards=shards)
    one, sharded = (json.loads((tmp_path / n / "warmstart.json").read_text()) for n in ("one", "sharded"))
    assert sharded["absent"] == one["absent"] and one["absent"]
    assert sharded["checkpoint"]["tensors"] == one["checkpoint"]["tensors"]


def test_a_tf2_template_sharded_output_restores_through_tf_train_checkpoint(tmp_path):
    import builders
    import tensorflow as tf

    info = builders.tf2_checkpoint(tmp_path / "tf2")
    out = tmp_path / "out"
    warmstart.transfer(info["prefix"], info["prefix"], str(out), shards=2)
    assert len(data_files(out)) == 2
    module = builders._tf2_module(seed=1)  # other values: the restore must bring the checkpoint's
    tf.train.Checkpoint(model=module).restore(str(out / "model.ckpt")).assert_existing_objects_matched()
    source = tf_values(info["prefix"])
    for var in module.variables:
        matches = [v for k, v in source.items() if k.startswith("model/") and v.shape == tuple(var.shape)
                   and np.array_equal(v, var.numpy())]
        assert matches, var.name


def test_units_on_a_dask_cluster_write_the_same_tensors_as_one_process(example, reference, cluster, tmp_path):
    _, client = cluster
    out = tmp_path / "out"
    warmstart.transfer(example.source, example.target, str(out), rules=example.rules, shards=4, dask=client)
    assert len(data_files(out)) == 4
    assert not list(out.glob(".warmstart-*"))
    assert_same_tensors(out, reference)


def test_a_unit_failing_for_good_fails_the_run_and_leaves_no_output(example, cluster, tmp_path):
    _, client = cluster
    source = tmp_path / "corrupt"
    import shutil

    shutil.copytree(example.source, source)
    reader = BundleReader(str(source))
    copied = [e.source_key for e in warmstart.plan(str(source), example.target, example.rules).entries
              if e.action == "copy"]
    key = max(copied, key=lambda k: reader.records[k].entry.size)  # a tensor one unit copies
    entry = reader.records[key].entry
    with open(reader.data_location(entry.shard_id).path, "r+b") as f:
        f.seek(entry.offset + 8)
        byte = f.read(1)
        f.seek(entry.offset + 8)
        f.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out"
    with pytest.raises(warmstart.CorruptCheckpointError, match="CRC32C"):
        warmstart.transfer(str(source), example.target, str(out), rules=example.rules, shards=3, dask=client)
    assert not out.exists()


def test_a_rerun_after_an_interruption_reuses_the_staged_units(example, reference, tmp_path):
    from warmstart.pipeline import prepare_sharded
    from warmstart.strategies import run_unit

    out = tmp_path / "out"
    job = prepare_sharded(example.source, example.target, str(out), 3, example.rules)
    staged = os.stat(out / run_unit(job.units[0]).part)  # then the run is lost: no commit, no rollback
    assert (out / ".warmstart-incomplete").exists() and not (out / "warmstart.json").exists()
    warmstart.transfer(example.source, example.target, str(out), rules=example.rules, shards=3)
    final = os.stat(out / "model.ckpt.data-00000-of-00003")
    assert (final.st_ino, final.st_mtime_ns) == (staged.st_ino, staged.st_mtime_ns)  # reused, not rewritten
    assert_same_tensors(out, reference)
    assert not list(out.glob(".warmstart-*"))


def test_two_attempts_at_one_unit_write_apart_and_the_loser_is_removed(example, reference, tmp_path):
    from warmstart.pipeline import commit_sharded, prepare_sharded
    from warmstart.strategies import run_unit

    out = tmp_path / "out"
    job = prepare_sharded(example.source, example.target, str(out), 2, example.rules)
    first = run_unit(job.units[0])
    (out / job.units[0].record_name).unlink()  # as if both attempts started before either recorded
    second = run_unit(job.units[0])
    assert first.part != second.part and (out / first.part).exists() and (out / second.part).exists()
    commit_sharded(job, [first, run_unit(job.units[1])])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "model.ckpt.data-00000-of-00002",
                                                     "model.ckpt.data-00001-of-00002", "model.ckpt.index",
                                                     "warmstart.json"]
    assert_same_tensors(out, reference)


def test_s3_source_and_output_through_a_scheduler_address(example, reference, cluster, s3_server, s3_bucket,
                                                          tmp_path):
    import fsspec

    c, _ = cluster
    opts = s3_server.storage_options()
    fs = fsspec.filesystem("s3", **opts)
    upload_dir(fs, example.source, f"{s3_bucket}/source")
    upload_dir(fs, Path(example.target), f"{s3_bucket}/template")
    out = f"{s3_bucket}/warm"
    warmstart.transfer(f"{s3_bucket}/source", f"{s3_bucket}/template", out, rules=example.rules,
                       storage_options=opts, shards=3, dask=c.scheduler_address)
    clear_fs_caches()
    fs = fsspec.filesystem("s3", **opts)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(out, detail=False))
    assert names == ["checkpoint", *[f"model.ckpt.data-0000{k}-of-00003" for k in range(3)], "model.ckpt.index",
                     "warmstart.json"]
    fs.get(out + "/", str(tmp_path / "got") + "/", recursive=True)
    assert_same_tensors(tmp_path / "got", reference)


def big_source(root: Path, tensors: int = 4, mib: int = 4) -> tuple[Path, Path]:
    """A checkpoint of ``tensors`` random float32 tensors of ``mib`` MiB, and its signature."""
    from warmstart.tables import signature_of

    prefix = root / "big" / "model.ckpt"
    writer = BundleWriter(resolve(str(prefix)))
    rng = np.random.default_rng(0)
    for i in range(tensors):
        writer.add_array(f"dense_{i}/kernel", rng.standard_normal((mib * 256, 1024), dtype=np.float32), "float")
    entries = writer.close_data()
    write_index(resolve(str(prefix)).with_suffix(".index"), entries)
    signature = root / "signature.json"
    signature.write_text(json.dumps(signature_of(str(prefix)).to_json()))
    return prefix, signature


@pytest.fixture
def throttled(s3_server):
    """benchmarks/throttle.py in front of the moto server: 2 MB/s per connection, 20 ms to first byte."""
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "throttle.py"), "--upstream",
                             f"127.0.0.1:{s3_server.port}", "--rate", "2e6", "--latency", "0.02"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().split()[1]
        yield {**s3_server.storage_options(),
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}}
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_worker_killed_mid_run_costs_time_not_the_output(cluster, s3_server, s3_bucket, throttled, tmp_path):
    import fsspec

    _, client = cluster
    prefix, signature = big_source(tmp_path)
    upload_dir(fsspec.filesystem("s3", **s3_server.storage_options()), prefix.parent, f"{s3_bucket}/big")
    killed: list[str] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if len(busy) == 2:  # both units running: kill one worker's process mid-unit
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                time.sleep(0.5)
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    out = tmp_path / "out"
    warmstart.transfer(f"{s3_bucket}/big/model.ckpt", str(signature), str(out), storage_options=throttled,
                       shards=2, dask=client)
    killer.join()
    assert killed, "no worker was killed while both units ran"
    got, want = tf_values(out / "model.ckpt"), tf_values(prefix)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker for the next tests


def test_a_transient_storage_error_is_retried_by_its_unit(example, reference, cluster, s3_server, s3_bucket,
                                                         tmp_path):
    import fsspec
    from servers import FaultyProxy

    _, client = cluster
    opts = s3_server.storage_options()
    upload_dir(fsspec.filesystem("s3", **opts), example.source, f"{s3_bucket}/source")
    # One ranged GET answers 500 InternalError; neither botocore nor s3fs retries it (max_attempts 1, not
    # a SlowDown), so only the unit's own retry can save the run.
    with FaultyProxy(s3_server.endpoint_url, failures=1, status=500, code="InternalError") as proxy:
        faulty = {**opts, "client_kwargs": {"endpoint_url": proxy.endpoint_url, "region_name": "us-east-1"},
                  "config_kwargs": {"retries": {"max_attempts": 1}}}
        out = f"{s3_bucket}/warm"
        warmstart.transfer(f"{s3_bucket}/source", example.target, out, rules=example.rules, storage_options=faulty,
                           shards=2, dask=client)
    assert proxy.failed == 1
    clear_fs_caches()
    got = tmp_path / "got"
    fsspec.filesystem("s3", **opts).get(out + "/", str(got) + "/", recursive=True)
    assert_same_tensors(got, reference)


def test_a_storage_error_keeps_its_transient_flag_across_processes():
    import pickle

    error = pickle.loads(pickle.dumps(warmstart.StorageError("s3://b/x: 503 SlowDown", transient=True)))
    assert error.transient and str(error) == "s3://b/x: 503 SlowDown"


def test_cli_shards_on_a_dask_address(example, reference, cluster, tmp_path):
    c, _ = cluster
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", example.source, example.target, str(out),
                           "--rules", example.rules, "--no-prefect", "--shards", "2", "--dask", c.scheduler_address,
                           "--json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] in (str(out), out.as_uri())
    assert len(data_files(out)) == 2
    assert_same_tensors(out, reference)
    bad = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", example.source, example.target,
                          str(tmp_path / "bad"), "--rules", example.rules, "--no-prefect", "--shards", "0"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 2 and "shards must be at least 1" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_the_flow_maps_units_over_a_dask_task_runner(example, reference, cluster, prefect_api, tmp_path):
    from warmstart.flows.warm_start import warm_start

    c, _ = cluster
    out = tmp_path / "out"
    summary = warm_start(source=example.source, target=example.target, output=str(out), rules_url=example.rules,
                         shards=3, dask_address=c.scheduler_address)
    assert summary["status"] == "ok" and summary["shards"] == 3
    assert len(data_files(out)) == 3
    assert_same_tensors(out, reference)


def test_the_flow_starts_a_local_dask_cluster_without_an_address(example, reference, prefect_api, tmp_path):
    from warmstart.flows.warm_start import warm_start

    out = tmp_path / "out"
    summary = warm_start(source=example.source, target=example.target, output=str(out), rules_url=example.rules,
                         shards=2)
    assert summary["status"] == "ok" and len(data_files(out)) == 2
    assert_same_tensors(out, reference)


@contextlib.contextmanager
def a_worker_that_dies(s3_server, s3_bucket, tmp_path):
    """A one-worker cluster allowing no failure (the first worker lost mid-unit is the unit's end, as its third
    loss is by default) whose worker is SIGKILLed as soon as it runs a unit, and a 2-tensor source on S3: yields
    (cluster, source URL, signature, pids killed)."""
    import dask
    import fsspec
    from distributed import Client, LocalCluster

    prefix, signature = big_source(tmp_path, tensors=2, mib=2)
    upload_dir(fsspec.filesystem("s3", **s3_server.storage_options()), prefix.parent, f"{s3_bucket}/big")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            Client(c, set_as_default=False) as client:
        killed: list[int] = []

        def kill_the_busy_worker() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_the_busy_worker)
        killer.start()
        try:
            yield c, f"{s3_bucket}/big/model.ckpt", str(signature), killed
        finally:
            killer.join()


def test_a_unit_whose_worker_dies_for_good_is_a_typed_error_and_leaves_no_output(s3_server, s3_bucket, throttled,
                                                                                  tmp_path):
    out = tmp_path / "out"
    with a_worker_that_dies(s3_server, s3_bucket, tmp_path) as (cluster, source, signature, killed), \
            pytest.raises(warmstart.StorageError, match="worker"):
        warmstart.transfer(source, signature, str(out), storage_options=throttled, shards=2,
                           dask=cluster.scheduler_address)
    assert killed
    assert not out.exists()


def test_the_flows_unit_whose_worker_dies_for_good_is_a_typed_error_and_leaves_no_output(
        s3_server, s3_bucket, throttled, prefect_api, tmp_path, monkeypatch):
    from warmstart.flows.warm_start import warm_start

    for key, value in {**s3_server.env(), "AWS_ENDPOINT_URL": throttled["client_kwargs"]["endpoint_url"]}.items():
        monkeypatch.setenv(key, value)  # the flow's tasks and the workers started below read the store so
    clear_fs_caches()
    out = tmp_path / "out"
    with a_worker_that_dies(s3_server, s3_bucket, tmp_path) as (cluster, source, signature, killed), \
            pytest.raises(warmstart.StorageError, match="worker"):
        warm_start(source=source, target=signature, output=str(out), shards=2, dask_address=cluster.scheduler_address)
    assert killed
    assert not out.exists()


def test_the_flow_refuses_a_scheduler_out_of_reach_before_it_withdraws_the_previous_output(example, prefect_api,
                                                                                          tmp_path):
    import socket

    import dask

    from warmstart.flows.warm_start import warm_start

    out = tmp_path / "out"
    warmstart.transfer(example.source, example.target, str(out), rules=example.rules)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(warmstart.UsageError, match="cannot reach the Dask scheduler"):
        warm_start(source=example.source, target=example.target, output=str(out), rules_url=example.rules,
                   overwrite=True, shards=2, dask_address=address)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
