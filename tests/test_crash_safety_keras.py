"""Crash safety of Keras outputs: a ``.weights.h5`` stream transfer killed (``kill -9``) at each of its
steps and at random points never leaves a loadable ``model.weights.h5`` that is not the finished one.

The child streams a Keras source's weights into a ``.weights.h5`` template and is killed by itself at a
step (before the template's copy, in the middle of the tensors, before the rename into place, before the
manifest, before the marker's removal) or by this process after a seeded random delay. After each kill:
``model.weights.h5`` is absent or holds exactly the source's weights (``model.load_weights`` is the
judge); readers refuse the output while its ``.warmstart-incomplete`` marker is there; the inputs are
unchanged; the next run (``overwrite`` only when the killed run had published) publishes what Keras loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import warmstart

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("WARMSTART_CRASH_SEED", "20240611"))
WIDTHS = (8, 700, 700, 700, 700, 700, 700, 3)  # ~11.8 MiB of float32 weights
MARKER = ".warmstart-incomplete"
WEIGHTS = "model.weights.h5"

CHILD = r"""
import json, os, signal, sys, time
args = json.loads(sys.argv[1])
import warmstart, warmstart.pipeline, warmstart.storage.publish, warmstart.storage.aside
import warmstart.strategies.keras_stream as ks
from warmstart.formats.keras import KerasWeightsReader

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

step = args["kill_at"]
if step == "before-template-copy":
    KerasWeightsReader.copy_to = die
elif step == "mid-tensors":  # some tensors written over the template's, others not yet
    real_cast, calls = ks.cast_value, []
    def cast_value(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            die()
        return real_cast(*a, **k)
    ks.cast_value = cast_value
elif step == "before-rename":  # every tensor written, the file still under its partial name
    real_replace = warmstart.storage.aside.os.replace
    class _Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def replace(self, a, b):
            die()
    warmstart.storage.aside.os = _Os()
elif step == "before-manifest":
    write_text = warmstart.storage.publish.OutputDir._write_text
    def _write_text(self, name, text):
        if name == "warmstart.json":
            die()
        return write_text(self, name, text)
    warmstart.storage.publish.OutputDir._write_text = _write_text
elif step == "before-marker-removal":
    warmstart.storage.publish.OutputDir.finish = die
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
warmstart.transfer(args["source"], args["target"], args["output"])
print(json.dumps({"end": time.monotonic()}), flush=True)
"""


def mlp(keras):
    inputs = keras.Input((WIDTHS[0],))
    h = inputs
    for i, w in enumerate(WIDTHS[1:]):
        h = keras.layers.Dense(w, name=f"d{i}")(h)
    return keras.Model(inputs, h)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("keras-crash")
    rng = np.random.default_rng(3)
    source = mlp(keras)
    for v in source.weights:
        v.assign(rng.standard_normal(v.shape).astype("float32"))
    source.save_weights(root / "source.weights.h5")
    mlp(keras).save_weights(root / "template.weights.h5")
    expected = [np.asarray(v) for v in source.weights]
    return {"root": root, "source": root / "source.weights.h5", "target": root / "template.weights.h5",
            "expected": expected, "digests": _digests(root)}


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("*.weights.h5"))}


def start(inputs, output: Path, kill_at: str | None = None) -> subprocess.Popen:
    args = {"source": str(inputs["source"]), "target": str(inputs["target"]), "output": str(output),
            "kill_at": kill_at}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read()
    return proc


def go(proc: subprocess.Popen) -> float:
    started = time.monotonic()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return started


def assert_loads_expected(path: Path, expected) -> None:
    import keras

    model = mlp(keras)
    model.load_weights(path)
    for got, want in zip(model.weights, expected):
        np.testing.assert_array_equal(np.asarray(got), want)


def check_after_kill(inputs, output: Path) -> list[str]:
    names = sorted(os.listdir(output)) if output.is_dir() else []
    if WEIGHTS in names:  # under its final name only once complete
        assert_loads_expected(output / WEIGHTS, inputs["expected"])
    if MARKER in names and WEIGHTS in names:
        with pytest.raises(warmstart.InputError, match="interrupted writing"):
            warmstart.read_table(str(output / WEIGHTS))
    assert _digests(inputs["root"]) == inputs["digests"], "an input changed"
    published = MARKER not in names and "warmstart.json" in names
    if "warmstart.json" in names:
        with pytest.raises(warmstart.StorageError, match="not empty"):
            warmstart.transfer(str(inputs["source"]), str(inputs["target"]), str(output))
    warmstart.transfer(str(inputs["source"]), str(inputs["target"]), str(output), overwrite="warmstart.json" in names)
    assert_loads_expected(output / WEIGHTS, inputs["expected"])
    assert sorted(os.listdir(output)) == [WEIGHTS, "warmstart.json"], os.listdir(output)
    return names if not published else names + ["(published)"]


@pytest.mark.parametrize("step", ["before-template-copy", "mid-tensors", "before-rename", "before-manifest",
                                  "before-marker-removal"])
def test_a_keras_output_killed_at_each_step_is_never_a_loadable_torn_file(inputs, tmp_path, step):
    output = tmp_path / "out"
    proc = start(inputs, output, step)
    go(proc)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {step} ({proc.returncode}): {err[-2000:]}"
    names = sorted(os.listdir(output))
    assert MARKER in names, names
    assert (WEIGHTS in names) is (step in ("before-manifest", "before-marker-removal")), names
    check_after_kill(inputs, output)


def test_a_keras_output_killed_at_random_points_is_never_a_loadable_torn_file(inputs, tmp_path):
    proc = start(inputs, tmp_path / "measured")
    started = go(proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    duration = json.loads(out.strip().splitlines()[-1])["end"] - started
    rng = random.Random(SEED)
    seen = []
    for i, (lo, hi) in enumerate([(0.0, 0.1), (0.1, 0.4), (0.4, 0.7), (0.7, 0.9), (0.9, 1.0), (0.98, 1.1)]):
        output = tmp_path / f"killed-{i}"
        proc = start(inputs, output)
        started = go(proc)
        time.sleep(max(0.0, started + duration * rng.uniform(lo, hi) - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL)
        seen.append(check_after_kill(inputs, output))
    print(f"run {duration:.3f} s; left: {seen}")
