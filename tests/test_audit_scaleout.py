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

VALUES = {"a": np.arange(100, dtype=np.float32) - 50.5, "big": np.linspace(-1, 1, 256 * 64, dtype=np.float32).reshape(256, 64),
          "b": np.arange(50, dtype=np.float32) * np.float32(0.25)}


def _zeros(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.zeros_like(v) for k, v in values.items()}


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
