"""Verification: the parity certificate of a transfer's output.

Ranked between the strategies and the pipeline: it reads the plan, the sources (by the strategies' readers) and
the output, builds the models with TensorFlow and Keras (imported lazily, inside the functions), and compares what
the target computes with what the source computed. By idea: ``certificate`` (the record), ``probes`` (seeded
inputs from input specs), ``compare`` (differences and tolerances), ``calls`` (calling one Keras layer),
``units`` (which layers are compared), ``keras_models`` (the two models, loaded the documented way), ``graphs``
(a TF1 graph from its MetaGraph), ``pairs`` (declared output pairs), ``rows`` (remapped rows), ``output`` (the
output's files), ``run`` (:func:`certify`: target side first, then the source side).
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".certificate": ("Certificate", "Check", "NotChecked", "Verdict", "VerifyMode", "VERIFY_MODES", "verify_mode"),
    ".memory": ("return_freed_memory",),
    ".output": ("OutputFiles", "output_files"),
    ".run": ("certify",),
})
