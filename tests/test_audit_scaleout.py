"""Sharded transfers against an independent oracle: the values written (NumPy), read back by TensorFlow; inputs
that change between a sharded run's preparation and its units; what a reader of an object store sees mid-run."""

from __future__ import annotations

import shutil
from pathlib import Path

import builders
import numpy as np
import pytest

import warmstart
from warmstart.pipeline import prepare_sharded, run_sharded

VALUES = {"a": np.arange(100, dtype=np.float32) - 50.5,
          "big": np.linspace(-1, 1, 256 * 64, dtype=np.float32).reshape(256, 64),
          "b": np.arange(50, dtype=np.float32) * np.float32(0.25)}


def _zeros(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.zeros_like(v) for k, v in values.items()}


# A source with a tensor far larger than the others, a string tensor and a float16 one the template holds as
# float32 (a cast); the template adds a variable the source lacks (kept at its initial value: once in the output).
MIXED = {"small": np.arange(7, dtype=np.float32),
         "huge": np.arange(512 * 256, dtype=np.float32).reshape(512, 256),
         "words": np.array([b"", b"one", b"\x00\xffbin"], dtype=object),
         "half": np.linspace(-2, 2, 9, dtype=np.float16), "step": np.array(42, dtype=np.int64)}
MIXED_TEMPLATE = {**_zeros(MIXED), "words": np.array([b"x", b"y", b"z"], dtype=object),
                  "half": np.zeros(9, np.float32), "fresh": np.full((3, 4), 0.5, np.float32)}
MIXED_RULES = {"on_dtype_mismatch": "cast", "on_missing": "init"}


def _expected() -> dict[str, np.ndarray]:
    """What the output must hold, from the values written: the source's, cast where the template says, and
    the template's own for the variable the source lacks."""
    return {**MIXED, "half": MIXED["half"].astype(np.float32), "fresh": MIXED_TEMPLATE["fresh"]}


def _assert_holds(prefix, expected: dict[str, np.ndarray]) -> None:
    got = builders.load_values(prefix)
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert got[key].dtype == want.dtype, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return (builders.tf1_checkpoint(root / "src", MIXED)["prefix"],
            builders.tf1_checkpoint(root / "tpl", MIXED_TEMPLATE)["prefix"])


@pytest.mark.parametrize("shards", [1, 4, 9])  # 9: more data files than tensors (some hold none)
def test_a_sharded_output_holds_exactly_the_values_written_and_tf1_saver_restores_them(mixed, shards, tmp_path):
    import tensorflow as tf

    out = tmp_path / "out"
    warmstart.transfer(*mixed, str(out), rules=MIXED_RULES, shards=shards)
    assert len(list(out.glob("model.ckpt.data-*"))) == shards
    assert tf.train.latest_checkpoint(str(out)) == str(out / "model.ckpt")
    expected = _expected()
    _assert_holds(out / "model.ckpt", expected)
    with tf.Graph().as_default():
        variables = {k: tf.compat.v1.get_variable(k, shape=v.shape, dtype=tf.as_dtype(v.dtype))
                     for k, v in expected.items()}
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver(variables).restore(sess, str(out / "model.ckpt"))
            for key, var in variables.items():
                np.testing.assert_array_equal(sess.run(var), expected[key], err_msg=key)


def test_a_tensor_gone_from_a_source_replaced_after_preparation_is_a_typed_error_and_nothing_is_left(tmp_path):
    source = builders.tf1_checkpoint(tmp_path / "src", VALUES)
    template = builders.tf1_checkpoint(tmp_path / "tpl", _zeros(VALUES))
    out = tmp_path / "out"
    job = prepare_sharded(source["prefix"], template["prefix"], str(out), 2)
    shutil.rmtree(tmp_path / "src")  # replaced (as a flow's units may run long after prepare-units) without 'big'
    builders.tf1_checkpoint(tmp_path / "src", {k: v for k, v in VALUES.items() if k != "big"})
    with pytest.raises(warmstart.InputError, match="'big'"):
        run_sharded(job)
    assert not out.exists()


@pytest.mark.integration
@pytest.mark.parametrize("shards", [None, 2])
@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_a_pinned_source_replaced_on_an_object_store_by_another_client_is_refused(store, shards, tmp_path, request):
    """Another writer (a training job, another process) replaces the source's objects under the same keys after
    the plan was made, in this process, through the same fsspec filesystem (as the flow's validate and transfer
    tasks share one): the transfer of the plan must see the new versions, not the listing it cached."""
    from servers import upload_dir

    server, bucket = request.getfixturevalue(f"{store}_server"), request.getfixturevalue(f"{store}_bucket")
    opts = server.storage_options()
    builders.tf1_checkpoint(tmp_path / "src", VALUES)
    builders.tf1_checkpoint(tmp_path / "new", {k: v + 1 for k, v in VALUES.items()})  # same keys, shapes, sizes
    template = builders.tf1_checkpoint(tmp_path / "tpl", _zeros(VALUES))
    upload_dir(server.filesystem(), tmp_path / "src", f"{bucket}/src")
    plan = warmstart.plan(f"{bucket}/src", template["prefix"], storage_options=opts)
    upload_dir(server.filesystem(), tmp_path / "new", f"{bucket}/src")  # another client: this process's cache is stale
    out = tmp_path / "out"
    with pytest.raises(warmstart.InputChangedError, match="changed after the plan was made"):
        warmstart.transfer(f"{bucket}/src", template["prefix"], str(out), plan=plan, storage_options=opts,
                           shards=shards)
    assert not out.exists()


@pytest.mark.integration
def test_a_sharded_overwrite_on_s3_shows_no_checkpoint_until_it_is_published(mixed, s3_server, s3_bucket, tmp_path):
    """An output of 3 data files replaced by one of 2: from the preparation through every unit, a reader of the
    bucket finds no state file, manifest, index or data file (old or new); then exactly the new output. (Not on the
    GCS emulator: it lacks objects.moveTo, and gcsfs retries each rename's 501 for ~34 s before it copies.)"""
    from servers import clear_fs_caches

    from warmstart.pipeline import commit_sharded
    from warmstart.strategies import run_unit

    server, bucket = s3_server, s3_bucket
    opts, out = server.storage_options(), f"{bucket}/warm"
    warmstart.transfer(*mixed, out, rules=MIXED_RULES, storage_options=opts, shards=3)

    def listed() -> list[str]:
        fs = server.filesystem()  # a reader elsewhere: its own client, no cache
        return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(out, detail=False)) if fs.exists(out) else []

    job = prepare_sharded(*mixed, out, 2, MIXED_RULES, storage_options=opts, overwrite=True)
    results = []
    for unit in [None, *job.units]:
        if unit is not None:
            results.append(run_unit(unit))
        assert all(n.startswith(".warmstart-") for n in listed()), listed()
    commit_sharded(job, results)
    assert listed() == ["checkpoint", "model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002",
                        "model.ckpt.index", "warmstart.json"]
    clear_fs_caches()
    got = tmp_path / "got"
    server.filesystem().get(out + "/", str(got) + "/", recursive=True)
    _assert_holds(got / "model.ckpt", _expected())


def test_a_resumed_run_never_takes_a_part_from_outside_its_output_as_a_staged_record_names_it(tmp_path):
    """An interrupted run's record (in the output: anyone who can write there can write it) naming, as its
    unit's part, a file outside the output (here the source's own data file, its version recorded as it is) is
    not reused: the unit runs again, and the input is neither moved nor changed."""
    import json

    from warmstart.storage import object_version, resolve
    from warmstart.strategies import run_unit

    source = builders.tf1_checkpoint(tmp_path / "src", VALUES)
    template = builders.tf1_checkpoint(tmp_path / "tpl", _zeros(VALUES))
    out = tmp_path / "out"
    job = prepare_sharded(source["prefix"], template["prefix"], str(out), 1)
    run_unit(job.units[0])  # then the run is lost: its marker, part and record stay
    data = Path(source["prefix"] + ".data-00000-of-00001")
    before = data.read_bytes()
    record = out / job.units[0].record_name
    doc = json.loads(record.read_text())
    doc["result"]["part"] = f"../src/{data.name}"
    doc["identity"] = object_version(resolve(str(data)))
    record.write_text(json.dumps(doc))
    warmstart.transfer(source["prefix"], template["prefix"], str(out), shards=1)
    assert data.read_bytes() == before
    _assert_holds(out / "model.ckpt", VALUES)


def test_a_sharded_overwrite_that_cannot_be_split_is_refused_before_the_previous_output_is_withdrawn(tmp_path):
    source = builders.tf1_checkpoint(tmp_path / "src", VALUES)
    template = builders.tf1_checkpoint(tmp_path / "tpl", {**_zeros(VALUES), "a": np.zeros(120, np.float32)})
    rules = {"transforms": [{"target": "a", "overlap": True}]}  # a remap: no sharded output holds one yet
    out = tmp_path / "out"
    warmstart.transfer(source["prefix"], template["prefix"], str(out), rules=rules)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(warmstart.UsageError, match="remap"):
        warmstart.transfer(source["prefix"], template["prefix"], str(out), rules=rules, shards=2, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_sharded_overwrite_with_no_usable_dask_cluster_is_refused_before_the_previous_output_is_withdrawn(
        tmp_path):
    source = builders.tf1_checkpoint(tmp_path / "src", VALUES)
    template = builders.tf1_checkpoint(tmp_path / "tpl", _zeros(VALUES))
    out = tmp_path / "out"
    warmstart.transfer(source["prefix"], template["prefix"], str(out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(warmstart.UsageError, match="dask must be"):  # as a scheduler that cannot be reached
        warmstart.transfer(source["prefix"], template["prefix"], str(out), shards=2, overwrite=True, dask=8786)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
