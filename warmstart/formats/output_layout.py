"""What a published warm start holds, by name: the checkpoint (``model.ckpt``: its index and data files), a Keras
weights file for Keras targets, and TF's state file naming the checkpoint (written just before the manifest).

The storage wing publishes outputs without knowing these names: it is handed :data:`OUTPUT_LAYOUT`.
"""

from __future__ import annotations

from ..storage import OutputLayout
from .bundle.directory import STATE_FILE, state_file_text

__all__ = ["CHECKPOINT_NAME", "KERAS_WEIGHTS", "OUTPUT_LAYOUT"]

#: The prefix of the checkpoint in an output (``model.ckpt.index``, ``model.ckpt.data-00000-of-00001``).
CHECKPOINT_NAME = "model.ckpt"
#: The Keras weights file in an output of a Keras target (``model.load_weights`` takes it).
KERAS_WEIGHTS = "model.weights.h5"
OUTPUT_LAYOUT = OutputLayout(prefix=CHECKPOINT_NAME, names=(KERAS_WEIGHTS,), last=STATE_FILE,
                             last_text=state_file_text(CHECKPOINT_NAME))
