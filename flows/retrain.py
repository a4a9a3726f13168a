"""An example retraining flow: warm-start today's model from the last checkpoint, then train it.

It calls the reusable ``warm-start`` flow as a subflow before its training step, and trains a
cold-started copy on the same data for comparison.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from warmstart.tasks.training import pretrain, save_new_model, train_from

from .warm_start import warm_start

__all__ = ["RetrainRequest", "retrain"]


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Retrain")

    previous_checkpoint: str | None = Field(
        default=None, title="Previous checkpoint",
        description="The last trained checkpoint (TF2, model and optimizer). Empty: the example trains one first.")
    workdir: str | None = Field(default=None, title="Work directory",
                                description="Where the new model and its warm start go. Empty: a temp directory.")
    steps: int = Field(default=20, ge=1, le=10_000, title="Training steps")
    seed: int = Field(default=7, title="Seed", description="Seed of the new model's initial weights and of today's data.")


@flow(name="retrain-example", persist_result=True)
def retrain(request: RetrainRequest = RetrainRequest()) -> dict[str, Any]:
    """Warm start (subflow), then train; returns both loss curves' ends."""
    workdir = Path(request.workdir or tempfile.mkdtemp(prefix="retrain-"))
    source = request.previous_checkpoint or pretrain(str(workdir / "yesterday"))
    target = save_new_model(str(workdir / "today" / "model.keras"), seed=request.seed)
    warm = warm_start(source=source, target=target, output=str(workdir / "warm-started"), overwrite=True)
    warm_run = train_from(target, str(workdir / "warm-started"), request.steps, request.seed)
    cold_run = train_from(target, None, request.steps, request.seed)
    return {
        "warm_start": {k: warm[k] for k in ("status", "output", "coverage", "counts", "strategy")},
        "warm": {k: warm_run[k] for k in ("initial_loss", "final_loss")},
        "cold": {k: cold_run[k] for k in ("initial_loss", "final_loss")},
        "warm_start_helps": warm_run["initial_loss"] < cold_run["initial_loss"],
    }


if __name__ == "__main__":
    print(retrain())
