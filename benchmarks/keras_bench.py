"""A BERT-base-sized Keras 3 model warm-started from Keras files: warmstart against Keras' own loading.

    python benchmarks/keras_bench.py [--repeat 3] [--layers 12] [--out benchmarks/KERAS.md]

The source is a BERT-base-sized functional encoder (vocabulary 30,522, hidden 768, 12 layers, 110 M
parameters, random weights) saved with ``save_weights`` and ``save``; the target grows the vocabulary
(30,600) and replaces the head (2 -> 5 classes). Every method runs in a fresh process (wall time
including imports, peak RSS from VmHWM) and writes the warm weights:

- ``keras``: ``load_model(target.keras)``, ``load_weights(source.weights.h5, skip_mismatch=True)``,
  ``save_weights`` (what a user writes by hand);
- ``ws-assign``: ``warmstart.transfer(source.weights.h5, target.keras, ..., strategy="assign")`` (builds
  the model, as Keras does);
- ``ws-stream``: ``warmstart.transfer(source.weights.h5, target.keras, ...)``: streamed into the archive's
  own weights, nothing built, no TF or Keras imported; ``ws-stream-h5``: the same into ``target.weights.h5``;
- ``ws-plan-h5`` / ``ws-plan-keras``: planning only, against the ``.weights.h5`` / ``.keras`` target;
- ``ws-signature-keras``: the ``.keras`` target's table by ``variable.path`` (what a TF-checkpoint source
  is planned against), built from its ``config.json`` without allocating a weight;
- with ``--s3``: a selection (encoder layers 0 and 1, about 13% of the bytes) of ``source.weights.h5``
  on a moto S3 server, streamed into the ``.weights.h5`` template, the bytes served counted by an HTTP
  proxy in front of moto (``s3proxy.py``): the selected tensors' bytes plus the file's structure.

Every output is compared with Keras' own: equal on every weight Keras loads, the template's on the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = {"on_shape_mismatch": "skip"}  # the grown embedding and the new head keep their initial values

CHILD = {
    "keras": """
import keras
t = keras.saving.load_model(W + "/target.keras", compile=False)
t.load_weights(W + "/source.weights.h5", skip_mismatch=True)
t.save_weights(OUT + "/model.weights.h5")
""",
    "ws-assign": ("import warmstart; warmstart.transfer(W + '/source.weights.h5', W + '/target.keras', OUT, "
                  "rules=RULES, strategy='assign')"),
    "ws-stream": "import warmstart; warmstart.transfer(W + '/source.weights.h5', W + '/target.keras', OUT, rules=RULES)",
    "ws-stream-h5": ("import warmstart; warmstart.transfer(W + '/source.weights.h5', W + '/target.weights.h5', OUT, "
                     "rules=RULES)"),
    "ws-plan-h5": "import warmstart; assert warmstart.plan(W + '/source.weights.h5', W + '/target.weights.h5', RULES).ok",
    "ws-plan-keras": "import warmstart; assert warmstart.plan(W + '/source.weights.h5', W + '/target.keras', RULES).ok",
    # what planning a TF checkpoint against the .keras target costs on the target's side: its table by
    # variable.path, built from config.json with no weight allocated (TF and Keras imported)
    "ws-signature-keras": "import warmstart; assert warmstart.signature_of(W + '/target.keras').variables",
}
S3_RULES = {"include": ["layer_[01]_.*"], "on_missing": "init"}  # two of twelve encoder layers
S3_CHILD = """
import json, warmstart
r = warmstart.transfer(SRC, W + '/target.weights.h5', OUT, rules=RULES, storage_options=OPTIONS)
print(json.dumps({'selected_bytes': r.plan.transferred_bytes, 'tensors': len(r.plan.transferred)}))
"""
WRITES = ("keras", "ws-assign", "ws-stream", "ws-stream-h5")


def encoder(vocab: int, classes: int, layers: int):
    import keras

    ids = keras.Input((128,), dtype="int32", name="ids")
    h = keras.layers.Embedding(vocab, 768, name="word_embeddings")(ids)
    h = keras.layers.LayerNormalization(name="embeddings_norm")(h)
    for i in range(layers):
        a = keras.layers.MultiHeadAttention(12, 64, name=f"layer_{i}_attention")(h, h)
        h = keras.layers.LayerNormalization(name=f"layer_{i}_attention_norm")(h + a)
        f = keras.layers.Dense(3072, activation="gelu", name=f"layer_{i}_intermediate")(h)
        f = keras.layers.Dense(768, name=f"layer_{i}_output")(f)
        h = keras.layers.LayerNormalization(name=f"layer_{i}_output_norm")(h + f)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(ids, keras.layers.Dense(classes, name="head")(pooled))


def trained_source(layers: int):
    """The source model: vocabulary 30,522, a 2-class head, random weights (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    source = encoder(30522, 2, layers)
    for v in source.weights:
        v.assign(rng.normal(0, 0.02, v.shape).astype("float32"))
    return source


def write_fixtures(work: Path, layers: int) -> None:
    source = trained_source(layers)
    source.save_weights(work / "source.weights.h5")
    target = encoder(30600, 5, layers)
    target.save(work / "target.keras")
    target.save_weights(work / "target.weights.h5")


def run(method: str, work: Path, out: Path, code: str | None = None, **names) -> dict:
    prelude = (f"import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; W, OUT, RULES = {str(work)!r}, {str(out)!r}, "
               f"{names.pop('rules', RULES)!r}\n" + "".join(f"{k} = {v!r}\n" for k, v in names.items()))
    tail = ("\nfrom pathlib import Path\nimport json\n"
            "hwm = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0]\n"
            "print(json.dumps({'peak_rss_mib': int(hwm.split()[1]) / 1024}))\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", prelude + (code or CHILD[method]) + tail], capture_output=True,
                          text=True, timeout=1200)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{method} failed:\n{done.stderr[-3000:]}")
    printed = {}
    for line in done.stdout.strip().splitlines():
        if line.startswith("{"):
            printed.update(json.loads(line))
    return {"method": method, "wall_s": wall, **printed}


def _moto_request_ms(fs, bucket: str) -> dict:
    """moto's own time for a 4 KiB ranged GET of the source and of a 1 MiB object (it copies the whole
    object for each request: what the S3 wall time below is made of)."""
    import os as _os

    fs.pipe(f"{bucket}/probe-1mib", _os.urandom(1 << 20))
    found = {}
    for name in ("source.weights.h5", "probe-1mib"):
        started = time.perf_counter()
        for i in range(10):
            fs.cat_file(f"{bucket}/{name}", start=4096 * i, end=4096 * (i + 1))
        found[name] = (time.perf_counter() - started) * 100
    return found


def run_s3(work: Path, repeat: int) -> list[dict]:
    """The selection from moto S3 through the counting proxy, ``repeat`` times (fresh processes)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from s3proxy import CountingProxy
    from servers import S3Server

    server = S3Server().start()
    proxy = CountingProxy(server.host, server.port).start()
    try:
        bucket = server.make_bucket("warmstart-keras-bench")
        server.filesystem().put_file(str(work / "source.weights.h5"), f"{bucket}/source.weights.h5")
        probe = _moto_request_ms(server.filesystem(), bucket)
        options = server.storage_options()
        options = {**options, "client_kwargs": {**options["client_kwargs"], "endpoint_url": proxy.endpoint_url}}
        runs = []
        for i in range(repeat):
            out = work / "out" / f"s3-{i}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            proxy.reset()
            result = run("ws-s3-selection", work, out, S3_CHILD, rules=S3_RULES, SRC=f"s3://{bucket}/source.weights.h5",
                         OPTIONS=options)
            counts = proxy.snapshot()
            runs.append({**result, "served_bytes": counts["get_body_bytes"], "requests": counts["requests"],
                         "ranged_gets": counts["ranged_gets"], "moto_ms": probe})
            print(f"s3 selection   {result['wall_s']:.2f} s, {counts['get_body_bytes'] / 2**20:.1f} MiB served for "
                  f"{result['selected_bytes'] / 2**20:.1f} MiB selected, {counts['requests']} requests", file=sys.stderr)
        return runs
    finally:
        proxy.stop()
        server.stop()


def compare(keras_out: Path, other: Path) -> tuple[int, int]:
    """(datasets equal, datasets in all) between two weights files of the same model."""
    import h5py
    import numpy as np

    equal = total = 0
    with h5py.File(keras_out, "r") as a, h5py.File(other, "r") as b:
        def visit(name, obj):
            nonlocal equal, total
            if isinstance(obj, h5py.Dataset):
                total += 1
                equal += int(np.array_equal(obj[()], b[name][()]))
        a.visititems(visit)
    return equal, total


def arguments(description: str, repeat: int, work: str, out: str) -> argparse.ArgumentParser:
    """The options every Keras benchmark takes: runs, model size, where fixtures and results go."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--work-dir", type=Path, default=HERE / "work" / work)
    parser.add_argument("--out", type=Path, default=HERE / out)
    return parser


def prepared(args: argparse.Namespace, last_file: str, write) -> Path:
    """The work directory, with the fixtures ``write(work, layers)`` makes (unless ``last_file`` is there)."""
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if not (work / last_file).exists():
        write(work, args.layers)
    return work


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0], 3, "keras", "KERAS.md")
    parser.add_argument("--s3", action="store_true", help="also the selection from moto S3 (bytes served)")
    args = parser.parse_args(argv)
    work = prepared(args, "target.weights.h5", write_fixtures)
    runs = []
    for i in range(args.repeat):
        for method in CHILD:
            out = work / "out" / f"{method}-{i}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            out.mkdir(parents=True) if method == "keras" else None
            runs.append(run(method, work, out))
            print(f"{method:14s} {runs[-1]['wall_s']:.2f} s, peak {runs[-1]['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    checks = {m: compare(work / "out" / "keras-0" / "model.weights.h5", work / "out" / f"{m}-0" / "model.weights.h5")
              for m in WRITES[1:]}
    doc = {"runs": runs, "checks": checks, "layers": args.layers, "repeat": args.repeat,
           "source_mib": (work / "source.weights.h5").stat().st_size / 2**20,
           "s3": run_s3(work, args.repeat) if args.s3 else []}
    args.out.write_text(render(doc))
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    print(render(doc))
    return 0


def render(doc: dict) -> str:
    med = {m: {k: statistics.median(r[k] for r in doc["runs"] if r["method"] == m) for k in ("wall_s", "peak_rss_mib")}
           for m in CHILD}
    base = med["keras"]
    lines = [f"# Keras files: warmstart vs Keras' own loading ({doc['layers']}-layer BERT-base-sized encoder, "
             f"{doc['source_mib']:.0f} MiB of weights)", "",
             f"command: `python benchmarks/keras_bench.py --repeat {doc['repeat']}{' --s3' if doc.get('s3') else ''}`; medians of {doc['repeat']} runs, each "
             "a fresh process, wall time including imports, peak RSS = VmHWM.", "",
             "| method | wall s | vs keras | peak RSS MiB | vs keras | output vs Keras' (equal datasets) |",
             "|---|---|---|---|---|---|"]
    for m in CHILD:
        eq = doc["checks"].get(m)
        check = "(reference)" if m == "keras" else (f"{eq[0]} / {eq[1]}" if eq else "no output (planning)")
        lines.append(f"| {m} | {med[m]['wall_s']:.2f} | {med[m]['wall_s'] / base['wall_s']:.2f}x | "
                     f"{med[m]['peak_rss_mib']:.0f} | {med[m]['peak_rss_mib'] / base['peak_rss_mib']:.2f}x | {check} |")
    return "\n".join(lines + render_s3(doc.get("s3") or [])) + "\n"


def render_s3(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    first = runs[0]
    served = statistics.median(r["served_bytes"] for r in runs)
    selected = first["selected_bytes"]
    return ["", f"## A selection from S3 (moto), {first['tensors']} tensors of encoder layers 0-1", "",
            "Bytes the S3 server sent (counted by an HTTP proxy in front of it) against the selected tensors' bytes; "
            "the rest is the file's HDF5 structure (read through 16 KiB blocks).", "",
            "| selected MiB | served MiB | served / selected | structure MiB | requests | wall s |", "|---|---|---|---|---|---|",
            f"| {selected / 2**20:.1f} | {served / 2**20:.1f} | {served / selected:.3f}x | "
            f"{(served - selected) / 2**20:.2f} | {statistics.median(r['requests'] for r in runs):.0f} | "
            f"{statistics.median(r['wall_s'] for r in runs):.2f} |", "",
            f"The wall time is moto's: it serves a 4 KiB ranged GET of this file in "
            f"{first['moto_ms']['source.weights.h5']:.0f} ms (of a 1 MiB object: {first['moto_ms']['probe-1mib']:.0f} ms), "
            "copying the whole object for each request; a real store answers in tens of ms."]


if __name__ == "__main__":
    sys.exit(main())
