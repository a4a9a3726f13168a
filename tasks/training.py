"""Tasks of the example retraining flow: build the new model, train it from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from warmstart import examples

__all__ = ["pretrain", "save_new_model", "train_from"]


@task(name="pretrain-example", cache_policy=NO_CACHE)
def pretrain(directory: str, steps: int = 300) -> str:
    """Stand-in for yesterday's training job: a trained TF2 checkpoint (model and optimizer)."""
    return examples.write_pretrained_regressor(directory, steps=steps)


@task(name="save-new-model", cache_policy=NO_CACHE)
def save_new_model(path: str, seed: int) -> str:
    """Today's model, freshly initialized, saved as the .keras target of the warm start."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    examples.build_regressor(seed=seed).save(path)
    return path


@task(name="train", cache_policy=NO_CACHE)
def train_from(model_path: str, checkpoint_dir: str | None, steps: int, seed: int) -> dict[str, Any]:
    """Load the model, restore ``checkpoint_dir`` (None: cold start), train; returns the loss curve."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    if checkpoint_dir:
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        tf.train.Checkpoint(model=model).restore(latest).assert_existing_objects_matched()
    losses = examples.train_regressor(model, steps, seed=seed)
    return {"initial_loss": losses[0], "final_loss": losses[-1], "losses": losses}
