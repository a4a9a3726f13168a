"""The example retraining flow: warm-start (subflow) from yesterday's checkpoint, then train."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_warm_start_subflow_beats_a_cold_start_at_step_zero(prefect_api, tmp_path):
    from warmstart.flows.retrain import RetrainRequest, retrain

    result = retrain(RetrainRequest(workdir=str(tmp_path), steps=5))
    assert result["warm_start"]["status"] == "ok"
    assert result["warm_start"]["strategy"] == "restore"  # a .keras target is built and restored into
    assert result["warm_start"]["coverage"] == 1.0
    assert result["warm"]["initial_loss"] < 0.1 * result["cold"]["initial_loss"]
    assert result["warm_start_helps"]
    assert (tmp_path / "warm-started" / "model.weights.h5").exists()
