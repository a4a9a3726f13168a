"""What naming a Keras target by ``variable.path`` costs: planning a BERT-base-sized ``.keras`` target.

    python benchmarks/keras_names_bench.py [--repeat 5] [--layers 12] [--out benchmarks/KERAS_NAMES.md]

The target is ``keras_bench.py``'s grown BERT-base-sized encoder (vocabulary 30,600, 12 layers, a new head) as
a ``.keras`` file; its variables are named by ``variable.path`` from its ``config.json``. Each method plans it
(``rules: on_shape_mismatch: skip``) in a fresh process, wall time including imports, peak RSS from VmHWM,
against the source model (vocabulary 30,522) written three ways:

- ``weights.h5``: its ``save_weights`` file (the Keras-file path: no TensorFlow or Keras imported);
- ``legacy.h5``: its ``save("source.h5")`` file (Keras 2 layout, named by its weight names);
- ``tf2+structure``: a TF2 checkpoint (``tf.train.Checkpoint(model=m).write``) named by the source's ``.keras``
  file (``source_structure``): its structure comes from building that model (TensorFlow and Keras imported).

Each run checks that the plan is ok, that the target rows are named by ``variable.path`` (``head/kernel``) and
says whether TensorFlow or Keras were imported.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from keras_bench import RULES, arguments, encoder, prepared, run, trained_source  # noqa: E402

SOURCES = {
    "weights.h5": ("W + '/source.weights.h5'", RULES),
    "legacy.h5": ("W + '/source.h5'", RULES),
    "tf2+structure": ("W + '/tf2/ckpt'", "STRUCTURE"),
}
CHILD = """
import json, sys, warmstart
rules = RULES if RULES != 'STRUCTURE' else {'on_shape_mismatch': 'skip', 'source_structure': W + '/source.keras'}
p = warmstart.plan(SOURCE, W + '/target.keras', rules)
names = {e.target for e in p.entries}
assert p.ok and 'head/kernel' in names and 'layer_0_attention/query/kernel' in names, p.failure_message()
print(json.dumps({'tensorflow': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules,
                  'variables': len(p.entries), 'copy': p.counts['copy']}))
"""
TARGET_WALL_S, TARGET_RSS_MIB = 1.0, 200.0  # the Keras-file path's budget


def write_fixtures(work: Path, layers: int) -> None:
    """The source in every format the methods read, and the grown target's .keras file."""
    import tensorflow as tf

    source = trained_source(layers)
    source.save_weights(work / "source.weights.h5")
    source.save(work / "source.keras")
    source.save(work / "source.h5")
    tf.train.Checkpoint(model=source).write(str(work / "tf2" / "ckpt"))
    encoder(30600, 5, layers).save(work / "target.keras")


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], 5, "keras-names", "KERAS_NAMES.md").parse_args(argv)
    work = prepared(args, "target.keras", write_fixtures)
    runs, load_before = [], os.getloadavg()[0]
    for i in range(args.repeat):
        for method, (source, rules) in SOURCES.items():
            code = f"SOURCE = {source}\n" + CHILD
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run(method, work, work / "out", code, rules=rules)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            result["cpu_s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            runs.append(result)
            print(f"{method:14s} {result['wall_s']:.2f} s ({result['cpu_s']:.2f} s CPU), peak "
                  f"{result['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    doc = {"runs": runs, "layers": args.layers, "repeat": args.repeat, "cores": os.cpu_count(),
           "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    args.out.write_text(render(doc))
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    print(render(doc))
    return 0


def render(doc: dict) -> str:
    lines = [f"# Planning a {doc['layers']}-layer BERT-base-sized .keras target named by variable.path", "",
             f"command: `python benchmarks/keras_names_bench.py --repeat {doc['repeat']}`; each run a fresh process "
             "(wall time including imports, peak RSS = VmHWM); median, min and max of "
             f"{doc['repeat']} runs; CPU = user + sys of the process (and of the children that read HDF5 "
             f"structures); the machine's 1-minute load average before and after: {doc['load'][0]} and "
             f"{doc['load'][1]} on {doc['cores']} cores (others' work: wall times grow with it, CPU times do not). "
             "Budget for the Keras-file path (from .weights.h5): "
             f"{TARGET_WALL_S:.0f} s, {TARGET_RSS_MIB:.0f} MiB.", "",
             "| source | wall s (median) | min - max | CPU s (median) | peak RSS MiB (median) | TF imported | "
             "Keras imported | variables (copy) | budget |", "|---|---|---|---|---|---|---|---|---|"]
    for method in SOURCES:
        rows = [r for r in doc["runs"] if r["method"] == method]
        wall = [r["wall_s"] for r in rows]
        rss = statistics.median(r["peak_rss_mib"] for r in rows)
        cpu = statistics.median(r["cpu_s"] for r in rows)
        budget = "-" if method != "weights.h5" else _verdict(statistics.median(wall), cpu, rss)
        lines.append(f"| {method} | {statistics.median(wall):.2f} | {min(wall):.2f} - {max(wall):.2f} | {cpu:.2f} | "
                     f"{rss:.0f} | "
                     f"{rows[0]['tensorflow']} | {rows[0]['keras']} | {rows[0]['variables']} ({rows[0]['copy']}) | "
                     f"{budget} |")
    return "\n".join(lines) + "\n"


def _verdict(wall: float, cpu: float, rss: float) -> str:
    """The Keras-file path's budget: met by wall time; else, when only a loaded machine's wall time is over
    it, said so (the process's own CPU time under the budget); else not met."""
    if rss >= TARGET_RSS_MIB or cpu >= TARGET_WALL_S:
        return "NOT met"
    return "met" if wall < TARGET_WALL_S else "CPU within, wall over (a loaded machine)"


if __name__ == "__main__":
    sys.exit(main())
