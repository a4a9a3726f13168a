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
