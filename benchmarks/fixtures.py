"""Write benchmark fixture sets (run by ``benchmarks/run.py`` in its own process; one TF import for all).

    python benchmarks/fixtures.py FIXTURES_DIR '{"SET_NAME": SPEC, ...}'

Each ``FIXTURES_DIR/SET_NAME`` receives (deterministically, from the seeds in the spec):

* ``src/model.ckpt.*`` + ``src/checkpoint``: the source, names ``old/block<b>/t<i>``, written by TF's own
  ``SaveV2`` kernel (eager, no graph), i.e. a genuine TF checkpoint;
* ``tmpl/model.ckpt.*``: the target's template checkpoint (same shapes, names ``new/...``, other values);
* ``target.meta``: the target as a TF1 MetaGraph, exported by ``Saver.export_meta_graph`` from a
  ``tf.Graph`` whose variables were never initialized (nothing is allocated: exporting needs no session);
* ``signature.json``: the target's variable signature (what ``warmstart signature`` writes);
* ``fixture.json``: the spec and timings; written last, so its presence means the set is complete.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import DST_PREFIX, SRC_PREFIX, build_tf1_graph, set_tensors, tensor_name  # noqa: E402


def _values(spec: dict, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(spec["count"]):
        yield rng.standard_normal(spec["shape"], dtype=np.float32)


def _save_v2(tf, prefix: Path, names: list[str], spec: dict, seed: int) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tensors = [tf.constant(v) for v in _values(spec, seed)]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    (prefix.parent / "checkpoint").write_text(
        f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n')


def main() -> int:
    root = Path(sys.argv[1])
    specs = json.loads(sys.argv[2])
    t0 = time.perf_counter()
    import tensorflow as tf

    import warmstart

    import_s = round(time.perf_counter() - t0, 2)
    for name, spec in specs.items():
        times = write_set(tf, warmstart, root / name, spec)
        print(json.dumps({"set": name, "import_s": import_s, **times}), flush=True)
    return 0


def write_set(tf, warmstart, set_dir: Path, spec: dict) -> dict:
    times: dict = {}
    count = spec["count"]
    src_names = [tensor_name(SRC_PREFIX, i, count) for i in range(count)]
    dst_names = [tensor_name(DST_PREFIX, i, count) for i in range(count)]

    t = time.perf_counter()
    _save_v2(tf, set_dir / "src" / "model.ckpt", src_names, spec, spec["seed"])
    times["source_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    _save_v2(tf, set_dir / "tmpl" / "model.ckpt", dst_names, spec, spec["seed"] + 1)
    times["template_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    graph, _ = build_tf1_graph(tf, set_tensors(spec))
    times["graph_build_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    with graph.as_default():
        saver = tf.compat.v1.train.Saver()  # as a training script would: its saver_def goes into the .meta
        saver.export_meta_graph(str(set_dir / "target.meta"), clear_devices=True)
    times["meta_export_s"] = round(time.perf_counter() - t, 2)

    table = warmstart.read_table(str(set_dir / "tmpl" / "model.ckpt"))
    (set_dir / "signature.json").write_text(json.dumps(table.to_json()))
    # A sanity check of what was just written: the .meta describes exactly the template's variables.
    meta_table = warmstart.signature_of(str(set_dir / "target.meta"))
    if sorted(meta_table) != sorted(table):
        raise SystemExit("target.meta and the template disagree on variable names")
    (set_dir / "fixture.json").write_text(json.dumps({"spec": spec, "times": times}, indent=1))
    return times


if __name__ == "__main__":
    sys.exit(main())
