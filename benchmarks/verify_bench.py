"""What the parity certificate costs: a BERT-base-sized model and MobileNetV2, the certificate next to the transfer.

    python benchmarks/verify_bench.py [--repeat 3] [--layers 12] [--out benchmarks/VERIFY.md]

Two models, random weights (nothing is downloaded), each written by Keras as the source's ``.keras`` file and the
new model's: ``keras_bench.py``'s BERT-base-sized encoder (vocabulary 30,522 -> 30,600, a new 5-class head: the
grown embedding and the head are not copied) and ``keras.applications.MobileNetV2`` (224 x 224, ``weights=None``,
the same model). Every method runs in a fresh process (wall time including imports, peak RSS from VmHWM):

- ``transfer``: ``warmstart.transfer(source.keras, new.keras, OUT, rules)`` (streamed, no TensorFlow);
- ``transfer+verify``: the same with ``verify=True`` (the certificate of the staged output before publishing);
- ``verify``: ``warmstart.verify(source.keras, new.keras, OUT, rules)`` of a finished output, in the caller's
  process as a library call leaves it;
- ``cli-verify``: ``warmstart verify source.keras new.keras OUT --rules FILE --json``, the command (its process
  returns freed memory to the system: ``warmstart.verification.memory``);
- ``keras-load``: the new model built from its configuration and the output loaded with ``load_weights``, what a
  user of the output does (the certificate's target side is that);
- ``import``: ``import tensorflow, keras`` alone (the floor of every process that builds a model).

The targets checked, on the command (``cli-verify``): a BERT-base certificate under 30 s and under 3x the model's
size in memory (the whole process's peak; its peak above ``import`` is shown too).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from keras_bench import arguments, encoder, run, trained_source  # noqa: E402

RULES = {"on_shape_mismatch": "skip"}
CHILD = {
    "import": "import tensorflow, keras",
    "transfer": "import warmstart; warmstart.transfer(W + '/source.keras', W + '/new.keras', OUT, rules=RULES)",
    "transfer+verify": """
import json, warmstart
r = warmstart.transfer(W + '/source.keras', W + '/new.keras', OUT, rules=RULES, verify=True)
c = r.certificate
print(json.dumps({'certificate_s': c.seconds, 'verdict': c.verdict, 'checks': len(c.checks)}))
""",
    "verify": """
import json, warmstart
c = warmstart.verify(W + '/source.keras', W + '/new.keras', DONE, rules=RULES)
print(json.dumps({'certificate_s': c.seconds, 'verdict': c.verdict, 'checks': len(c.checks),
                  'not_checked': len(c.not_checked)}))
""",
    "cli-verify": """
import contextlib, io, json
from warmstart.cli import main
with open(W + '/rules-cli.json', 'w') as f:
    json.dump(RULES, f)
with contextlib.redirect_stdout(io.StringIO()) as printed:
    code = main(['verify', W + '/source.keras', W + '/new.keras', DONE, '--rules', W + '/rules-cli.json', '--json'])
c = json.loads(printed.getvalue())['verify']
print(json.dumps({'certificate_s': c['seconds'], 'verdict': c['verdict'], 'checks': len(c['checks']),
                  'not_checked': len(c['not_checked'])}))
""",
    "keras-load": """
import json, zipfile, keras
config = json.loads(zipfile.ZipFile(W + '/new.keras').read('config.json'))
keras.saving.deserialize_keras_object(config, safe_mode=True).load_weights(DONE + '/model.weights.h5')
""",
}
BERT_WALL_S, BERT_RSS_FACTOR = 30.0, 3.0


def write_bert(work: Path, layers: int) -> None:
    trained_source(layers).save(work / "source.keras")
    encoder(30600, 5, layers).save(work / "new.keras")


def write_mobilenet(work: Path, _layers: int) -> None:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    source = keras.applications.MobileNetV2(weights=None)
    for v in source.weights:
        value = rng.normal(0, 0.1, v.shape)
        v.assign((np.abs(value) + 0.5 if "variance" in v.path else value).astype("float32"))
    source.save(work / "source.keras")
    keras.applications.MobileNetV2(weights=None).save(work / "new.keras")


MODELS = {"bert-base": write_bert, "mobilenet-v2": write_mobilenet}


def fixtures(root: Path, layers: int) -> dict[str, Path]:
    """Each model's work directory with its two files and a finished output (written once)."""
    out = {}
    for name, write in MODELS.items():
        work = root / name
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "new.keras").exists():
            subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); from pathlib "
                            f"import Path; import verify_bench as b; b.MODELS[{name!r}](Path({str(work)!r}), {layers})"],
                           check=True)
        if not (work / "done" / "warmstart.json").exists():
            subprocess.run(["rm", "-rf", str(work / "done")], check=True)
            run("transfer", work, work / "done", CHILD["transfer"], rules=RULES)
        out[name] = work
    return out


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0], 3, "verify", "VERIFY.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown from the committed JSON")
    args = parser.parse_args(argv)
    if args.render_only:
        args.out.write_text(render(json.loads(args.out.with_suffix(".json").read_text())))
        return 0
    works = fixtures(args.work_dir, args.layers)
    runs = []
    for i in range(args.repeat):
        for name, work in works.items():
            for method, code in CHILD.items():
                out = work / "out" / f"{method}-{i}"
                subprocess.run(["rm", "-rf", str(out)], check=True)
                result = run(method, work, out, code, rules=RULES, DONE=str(work / "done"))
                runs.append({"model": name, **result})
                print(f"{name:12s} {method:16s} {result['wall_s']:.2f} s, peak {result['peak_rss_mib']:.0f} MiB"
                      + (f", certificate {result['certificate_s']:.2f} s ({result['verdict']})"
                         if "certificate_s" in result else ""), file=sys.stderr)
    doc = {"runs": runs, "layers": args.layers, "repeat": args.repeat,
           "model_mib": {name: _weights_mib(work / "source.keras") for name, work in works.items()}}
    args.out.write_text(render(doc))
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    print(render(doc))
    return 0


def _weights_mib(path: Path) -> float:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.getinfo("model.weights.h5").file_size / 2**20


def _median(runs: list[dict], model: str, method: str, key: str) -> float:
    return statistics.median(r[key] for r in runs if r["model"] == model and r["method"] == method)


def render(doc: dict) -> str:
    runs = doc["runs"]
    lines = [f"# The parity certificate's cost ({doc['layers']}-layer BERT-base-sized encoder and MobileNetV2)", "",
             f"command: `python benchmarks/verify_bench.py --repeat {doc['repeat']}`; medians of {doc['repeat']} runs, "
             "each a fresh process, wall time including imports, peak RSS = VmHWM; certificate s: the certificate's "
             "own time (Certificate.seconds).", ""]
    for model, size in doc["model_mib"].items():
        floor = _median(runs, model, "import", "peak_rss_mib")
        lines += [f"## {model}: {size:.0f} MiB of weights", "",
                  "| method | wall s | certificate s | peak RSS MiB | x model size | above `import` MiB | x model size |",
                  "|---|---|---|---|---|---|---|"]
        for method in CHILD:
            rss, wall = _median(runs, model, method, "peak_rss_mib"), _median(runs, model, method, "wall_s")
            cert = [r["certificate_s"] for r in runs if r["model"] == model and r["method"] == method
                    and "certificate_s" in r]
            cert_s = f"{statistics.median(cert):.2f}" if cert else ""
            above = f"{rss - floor:.0f} | {(rss - floor) / size:.2f}x" if rss >= floor else "(no TF imported) | "
            lines.append(f"| {method} | {wall:.2f} | {cert_s} | {rss:.0f} | {rss / size:.2f}x | {above} |")
        lines.append("")
    lines += _verdicts(doc)
    return "\n".join(lines) + "\n"


def _verdicts(doc: dict) -> list[str]:
    runs, size = doc["runs"], doc["model_mib"]["bert-base"]
    wall = _median(runs, "bert-base", "cli-verify", "wall_s")
    cert = statistics.median(r["certificate_s"] for r in runs if r["model"] == "bert-base" and r["method"] == "cli-verify")
    rss = _median(runs, "bert-base", "cli-verify", "peak_rss_mib")
    library = _median(runs, "bert-base", "verify", "peak_rss_mib")
    floor = _median(runs, "bert-base", "import", "peak_rss_mib")
    verdicts = {r["verdict"] for r in runs if "verdict" in r}
    ok = lambda good: "met" if good else "NOT met"  # noqa: E731
    keras_rss = _median(runs, "bert-base", "keras-load", "peak_rss_mib")
    return ["## Targets", "",
            f"- BERT-base certificate under {BERT_WALL_S:.0f} s: {cert:.1f} s (the whole `warmstart verify` process "
            f"{wall:.1f} s, imports included): {ok(wall < BERT_WALL_S)}",
            f"- under {BERT_RSS_FACTOR:.0f}x the model's size ({BERT_RSS_FACTOR * size:.0f} MiB) in memory: the whole "
            f"process peaks at {rss:.0f} MiB ({rss / size:.2f}x): {ok(rss < BERT_RSS_FACTOR * size)}; above the "
            f"{floor:.0f} MiB of importing TensorFlow and Keras, {rss - floor:.0f} MiB "
            f"({(rss - floor) / size:.2f}x): {ok(rss - floor < BERT_RSS_FACTOR * size)}. Keras' own loading of the output "
            f"(`keras-load`: the model built, `load_weights`) peaks at {keras_rss:.0f} MiB ({keras_rss / size:.2f}x): "
            f"the certificate holds one model at a time and "
            + (f"adds {rss - keras_rss:.0f} MiB to that" if rss >= keras_rss else
               f"peaks {keras_rss - rss:.0f} MiB below it (its target model is built without initial values: load_weights "
               "writes each variable once; freed blocks go back to the system)"),
            f"- the library call `warmstart.verify` in a process of its own, which leaves glibc's malloc as it is: "
            f"{library:.0f} MiB ({library / size:.2f}x)",
            f"- every certificate's verdict: {', '.join(sorted(verdicts))}"]


if __name__ == "__main__":
    sys.exit(main())
