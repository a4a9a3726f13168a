"""Damaged and hostile checkpoints made from real TF-written ones: the index re-encoded with edits.

A test takes a checkpoint TensorFlow wrote, changes what an attacker or a broken writer could
change (an entry's shape, size, offset, slices; raw bytes of the index), and checks that warmstart
refuses it with a typed error and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from warmstart.formats.bundle._protos import BundleEntry, decode_entry, encode_entry
from warmstart.formats.bundle._sstable import TableWriter, read_table

__all__ = ["copy_checkpoint", "edit_entries", "entries", "replace", "raw_index", "write_raw_index", "tree_digest",
           "fuzz_directory", "fuzz_rules", "fuzz_keras_config", "fuzz_keras_archive", "fuzz_shard_index",
           "fuzz_meta_graph"]


def copy_checkpoint(src_dir, dst_dir) -> Path:
    """A private copy of a checkpoint directory (so a test may damage it)."""
    shutil.copytree(src_dir, dst_dir)
    return Path(dst_dir)


def _index_path(directory) -> Path:
    found = sorted(Path(directory).glob("*.index"))
    assert len(found) == 1, found
    return found[0]


def raw_index(directory) -> list[tuple[bytes, bytes]]:
    """The index's (key, value) pairs, as stored."""
    return [(k, bytes(v)) for k, v in read_table(_index_path(directory).read_bytes())]


def write_raw_index(directory, items: list[tuple[bytes, bytes]]) -> None:
    """Replace the index with these (key, value) pairs (a valid table: sorted keys, good block CRCs)."""
    writer = TableWriter()
    for k, v in items:
        writer.add(k, v)
    _index_path(directory).write_bytes(writer.finish())


def entries(directory) -> dict[bytes, BundleEntry]:
    return {k: decode_entry(v) for k, v in raw_index(directory) if k}


def edit_entries(directory, edit: Callable[[dict[bytes, BundleEntry]], None]) -> None:
    """Decode every entry, let ``edit`` change the dict in place, and write the index back."""
    items = raw_index(directory)
    header = [(k, v) for k, v in items if not k]
    decoded = {k: decode_entry(v) for k, v in items if k}
    edit(decoded)
    write_raw_index(directory, header + sorted((k, encode_entry(e)) for k, e in decoded.items()))


def replace(entry: BundleEntry, **changes) -> BundleEntry:
    return dataclasses.replace(entry, **changes)


def tree_digest(directory) -> dict[str, str]:
    """name -> sha256 of every file under ``directory`` (symlinks followed): to show nothing changed."""
    root = Path(directory)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- fuzzing


def _mutate_value(rng, value: bytes) -> bytes:
    from warmstart.formats.bundle._protos import write_varint

    data = bytearray(value)
    choice = rng.integers(6)
    if choice == 0 and data:  # flip bits
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    elif choice == 1 and data:  # overwrite a byte
        data[rng.integers(len(data))] = int(rng.integers(256))
    elif choice == 2:  # truncate
        data = data[: rng.integers(len(data) + 1)]
    elif choice == 3:  # insert a huge or negative varint (a length, offset, size or dim)
        pos = int(rng.integers(len(data) + 1))
        big = int(rng.choice([1 << 29, 1 << 31, 1 << 40, 1 << 62, (1 << 64) - 1, (1 << 64) - 8]))
        data[pos:pos] = write_varint(big)
    elif choice == 4:  # insert random bytes
        pos = int(rng.integers(len(data) + 1))
        data[pos:pos] = bytes(rng.integers(0, 256, rng.integers(1, 8), dtype=np.uint8))
    else:  # append a field with a random tag
        data += bytes([int(rng.integers(256))]) + write_varint(int(rng.choice([1, 127, 1 << 29, 1 << 62])))
    return bytes(data)


def fuzz_directory(src_dir, work_dir, cases: int, seed: int) -> dict[str, int]:
    """Mutate ``src_dir``'s index ``cases`` times (structure-aware: entries and header re-encoded in a
    valid table, plus raw byte damage), and each time read the table and every tensor.

    Returns outcome counts; raises whatever is not a ``WarmStartError`` (a crash).
    """
    from warmstart import WarmStartError
    from warmstart.formats.bundle import BundleReader

    rng = np.random.default_rng(seed)
    work = copy_checkpoint(src_dir, Path(work_dir) / f"fuzz-{Path(src_dir).name}-{seed}")
    index = _index_path(work)
    pristine = index.read_bytes()
    items = raw_index(work)
    outcomes = {"table": 0, "refused": 0}
    for case in range(cases):
        if rng.random() < 0.15:  # raw damage: the table's own checks must catch it
            data = bytearray(pristine)
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] = int(rng.integers(256))
            index.write_bytes(bytes(data))
        else:
            mutated = list(items)
            for _ in range(rng.integers(1, 3)):
                i = int(rng.integers(len(mutated)))
                mutated[i] = (mutated[i][0], _mutate_value(rng, mutated[i][1]))
            write_raw_index(work, mutated)
        try:
            reader = BundleReader(str(work))
            from warmstart.tables import table_from_bundle

            table_from_bundle(reader)
            for key in reader.records:
                reader.read(key)
            outcomes["table"] += 1
        except WarmStartError:
            outcomes["refused"] += 1
        except BaseException as exc:
            raise AssertionError(f"case {case} (seed {seed}) crashed: {type(exc).__name__}: {exc}") from exc
    index.write_bytes(pristine)
    return outcomes


# --------------------------------------------------------------------------- fuzzing the newer surfaces
# Each returns outcome counts and raises AssertionError for anything but a result or a WarmStartError
# (a crash), or for a case slower than ``slow`` seconds.

_RULES_SNIPPETS = [b"(", b")", b"[", b"]", b"{", b"}", b"*", b"+", b"?", b"{1000}", b"{1001}", b"\\", b"\\1", b"\\g<x>",
                   b"(?P<x>", b"(?!", b"(?=", b"(?<=a)", b"(a|aa)+", b"(a*)*", b"&a ", b"*a", b"!!python/object:os.system",
                   b"py:os:abort", b"\n- ", b": ", b"'", b'"', b"\x00", b"\xff", b"-> ", b"null", b"1e309", b"\t"]


def _mutate_text(rng, data: bytes, snippets: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        choice = rng.integers(5)
        pos = int(rng.integers(len(out) + 1))
        if choice == 0 and out:  # overwrite a byte
            out[min(pos, len(out) - 1)] = int(rng.integers(256))
        elif choice == 1:  # insert a snippet
            out[pos:pos] = snippets[int(rng.integers(len(snippets)))]
        elif choice == 2:  # delete a run
            del out[pos:pos + int(rng.integers(1, 20))]
        elif choice == 3:  # repeat a run (deep nesting, long lists)
            run = bytes(out[pos:pos + int(rng.integers(1, 6))])
            out[pos:pos] = run * int(rng.choice([2, 50, 5000]))
        else:  # a line copied elsewhere
            lines = bytes(out).split(b"\n")
            line = lines[int(rng.integers(len(lines)))]
            lines.insert(int(rng.integers(len(lines) + 1)), line)
            out = bytearray(b"\n".join(lines))
    return bytes(out)


def _outcome(run, outcomes: dict[str, int], case: str, slow: float) -> None:
    from warmstart import WarmStartError
    import time

    started = time.monotonic()
    try:
        run()
        outcomes["ok"] += 1
    except WarmStartError:
        outcomes["refused"] += 1
    except BaseException as exc:
        raise AssertionError(f"{case} crashed: {type(exc).__name__}: {exc}") from exc
    took = time.monotonic() - started
    assert took < slow, f"{case} took {took:.1f} s"


def fuzz_rules(work_dir, cases: int, seed: int, slow: float = 10.0) -> dict[str, int]:
    """Mutate a real rules file (YAML and JSON forms): each loads and plans, or is a typed error."""
    import yaml

    from warmstart.examples import EXAMPLE_RULES
    from warmstart.planning import load_rules, make_plan
    from warmstart.tables import Variable, VariableTable

    rules = {**EXAMPLE_RULES, "exclude": ["optimizer/.*", ".*/Adam(_\\d+)?"], "include": ["model/.*", ".*"],
             "transforms": [{"target": "model/pooler/(.*)", "overlap": True, "from": "bert/pooler/\\1"}],
             "fill_from": [["model/encoder/.*", "main"]]}
    names = ["model/embeddings/word", "model/encoder/layer_0/kernel", "model/pooler/dense/kernel", "head/kernel",
             "a" * 40 + "/b", "optimizer/iter"]
    target = VariableTable.of([Variable(n, (4, 2), "float32", n) for n in names], "target", "tf1-checkpoint")
    source = VariableTable.of([Variable("bert/" + n[6:] if n.startswith("model/") else n, (4, 2), "float32",
                                        "bert/" + n[6:] if n.startswith("model/") else n) for n in names],
                              "source", "tf1-checkpoint")
    rng = np.random.default_rng(seed)
    pristine = [yaml.safe_dump(rules).encode(), json.dumps(rules).encode()]
    path = Path(work_dir) / f"rules-{seed}.yaml"
    outcomes = {"ok": 0, "refused": 0}
    for case in range(cases):
        path.write_bytes(_mutate_text(rng, pristine[case % 2], _RULES_SNIPPETS))
        _outcome(lambda: make_plan(source, target, load_rules(path)), outcomes, f"rules case {case} (seed {seed})",
                 slow)
    return outcomes


def _mutate_json_value(rng, doc):
    """A copy of ``doc`` with one value somewhere replaced (another type, a huge number, deep nesting, ...)."""
    import copy

    doc = copy.deepcopy(doc)
    containers = []

    def walk(node):
        if isinstance(node, dict):
            containers.extend((node, k) for k in node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            containers.extend((node, i) for i in range(len(node)))
            for v in node:
                walk(v)
    walk(doc)
    if not containers:
        return doc
    parent, key = containers[int(rng.integers(len(containers)))]
    replacements = [None, True, -1, 0, 1 << 62, 1e308, float("nan"), "", "x" * 100, "Dense", "keras.layers",
                    [], {}, [[[[[[[[]]]]]]]], {"class_name": "Lambda", "config": {"function": "os.system"}},
                    {"class_name": "__import__", "module": "os"}, ["a"] * 1000]
    parent[key] = replacements[int(rng.integers(len(replacements)))]
    return doc


def fuzz_keras_config(keras_path, work_dir, cases: int, seed: int, slow: float = 30.0) -> dict[str, int]:
    """Mutate the config.json of a real .keras archive: each builds a table or is a typed error."""
    import zipfile

    import warmstart

    with zipfile.ZipFile(keras_path) as a:
        members = {i.filename: a.read(i) for i in a.infolist()}
    config = json.loads(members["config.json"])
    rng = np.random.default_rng(seed)
    path = Path(work_dir) / f"config-{seed}.keras"
    outcomes = {"ok": 0, "refused": 0}
    for case in range(cases):
        mutated = config
        for _ in range(int(rng.integers(1, 3))):
            mutated = _mutate_json_value(rng, mutated)
        text = json.dumps(mutated).encode() if rng.random() < 0.8 else _mutate_text(
            rng, json.dumps(config).encode(), [b"[", b"{", b"]", b"}", b'"', b",", b"\xff", b"1e999"])
        with zipfile.ZipFile(path, "w") as out:
            for name, data in members.items():
                out.writestr(name, text if name == "config.json" else data)
        _outcome(lambda: warmstart.signature_of(str(path)), outcomes, f"config case {case} (seed {seed})", slow)
    return outcomes


def fuzz_keras_archive(keras_path, work_dir, cases: int, seed: int, slow: float = 30.0) -> dict[str, int]:
    """Mutate a real .keras archive's members, declared sizes and compression: each opens and reads every
    tensor, or is a typed error."""
    import struct
    import zipfile

    from warmstart.formats import open_source

    with zipfile.ZipFile(keras_path) as a:
        members = {i.filename: a.read(i) for i in a.infolist()}
    rng = np.random.default_rng(seed)
    path = Path(work_dir) / f"archive-{seed}.keras"
    outcomes = {"ok": 0, "refused": 0}
    for case in range(cases):
        kind = int(rng.integers(4))
        names = dict(members)
        if kind == 0:  # members dropped, renamed or added
            victim = list(names)[int(rng.integers(len(names)))]
            data = names.pop(victim)
            if rng.random() < 0.5:
                names[rng.choice(["model.weights.npz", "../model.weights.h5", "model.weights.h5/", "x"])] = data
        compression = zipfile.ZIP_DEFLATED if kind in (1, 2) or rng.random() < 0.3 else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", compression=compression) as out:
            for name, data in names.items():
                out.writestr(name, data)
        raw = bytearray(path.read_bytes())
        if kind == 2:  # damage the compressed stream
            for _ in range(int(rng.integers(1, 8))):
                raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        elif kind == 3:  # declared sizes that lie (central directory and local headers)
            for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
                at = raw.find(sig)
                while at >= 0:
                    if rng.random() < 0.5:
                        raw[at + offset:at + offset + 4] = struct.pack(
                            "<I", int(rng.choice([0, 1, 1 << 20, (1 << 32) - 1, int(rng.integers(1 << 16))])))
                    at = raw.find(sig, at + 4)
        path.write_bytes(bytes(raw))

        def read_all():
            reader = open_source(str(path))
            for key in reader.records:
                reader.read(key)
        _outcome(read_all, outcomes, f"archive case {case} kind {kind} (seed {seed})", slow)
    return outcomes


def fuzz_shard_index(sharded_dir, work_dir, cases: int, seed: int, slow: float = 30.0) -> dict[str, int]:
    """Mutate a real sharded ``.weights.json`` index beside its real shards: each opens and reads, or is a
    typed error (never a file outside its directory)."""
    import shutil

    from warmstart.formats import open_source

    work = Path(work_dir) / f"sharded-{seed}"
    shutil.copytree(sharded_dir, work)
    index = work / "model.weights.json"
    doc = json.loads(index.read_text())
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "refused": 0}
    snippets = [b'"../model.weights.h5"', b'"/etc/passwd"', b"[", b"{", b"null", b'"x.weights.h5"', b"\xff"]
    for case in range(cases):
        if rng.random() < 0.6:
            mutated = doc
            for _ in range(int(rng.integers(1, 3))):
                mutated = _mutate_json_value(rng, mutated)
            index.write_text(json.dumps(mutated))
        else:
            index.write_bytes(_mutate_text(rng, json.dumps(doc).encode(), snippets))

        def read_all():
            reader = open_source(str(index))
            for s in reader.shards:
                assert Path(s.path).resolve().parent == work.resolve(), s.path
            for key in reader.records:
                reader.read(key)
        _outcome(read_all, outcomes, f"shard index case {case} (seed {seed})", slow)
    return outcomes


def _mutate_meta_graph(rng, meta) -> None:
    """One change to a parsed MetaGraphDef where its Saver's keys are read: the save op's inputs, its constants,
    the ops between a saved tensor and its variable, the saver_def, the VariableDefs."""
    nodes = list(meta.graph_def.node)
    saving = [n for n in nodes if n.name.startswith("save/") or "Read" in n.name or n.op == "VarHandleOp"]
    names = [n.name for n in nodes]
    choice = rng.integers(7)
    node = saving[int(rng.integers(len(saving)))]
    if choice == 0 and node.input:  # an input elsewhere: another node, a missing one, a control input
        i = int(rng.integers(len(node.input)))
        node.input[i] = str(rng.choice([names[int(rng.integers(len(names)))], "nowhere", "^" + node.input[i],
                                        node.input[i] + ":1", node.name]))
    elif choice == 1:  # inputs dropped or repeated
        inputs = list(node.input)
        del node.input[:]
        node.input.extend(inputs[: int(rng.integers(len(inputs) + 1))] if rng.random() < 0.5 else inputs * 2)
    elif choice == 2:  # the op's type changed
        node.op = str(rng.choice(["Identity", "ReadVariableOp", "Const", "SaveV2", "SaveSlices", "VarHandleOp", "NoOp"]))
    elif choice == 3 and "value" in node.attr:  # a constant's strings or shape
        tensor = node.attr["value"].tensor
        values = list(tensor.string_val)
        del tensor.string_val[:]
        options = [values[:1], values * 2, [b"\xff\xfe"] + values[1:], [b"a"] * len(values), []]
        tensor.string_val.extend(options[int(rng.integers(len(options)))] if values else [b"x"])
        if rng.random() < 0.3:
            tensor.tensor_shape.dim.add(size=int(rng.choice([-1, 0, 1 << 40])))
    elif choice == 4:  # the save tensor named elsewhere
        meta.saver_def.save_tensor_name = str(rng.choice([names[int(rng.integers(len(names)))], "", "x:0", "^save"]))
    elif choice == 5:  # a VariableDef's bytes damaged
        values = meta.collection_def["variables"].bytes_list.value
        i = int(rng.integers(len(values)))
        values[i] = _mutate_value(rng, values[i])
    else:  # a node removed
        meta.graph_def.node.remove(node)


def fuzz_meta_graph(template_dir, work_dir, cases: int, seed: int, slow: float = 10.0) -> dict[str, int]:
    """Mutate the real MetaGraph beside a TF1 template (its Saver's ops and constants, raw bytes): the template's
    table is made, or a typed error."""
    from warmstart.formats.meta_graph import _CLASSES
    from warmstart.tables import signature_of

    work = copy_checkpoint(template_dir, Path(work_dir) / f"meta-{seed}")
    meta_path = next(work.glob("*.meta"))
    pristine = meta_path.read_bytes()
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "refused": 0}
    for case in range(cases):
        if rng.random() < 0.15:
            meta_path.write_bytes(_mutate_value(rng, pristine))
        else:
            meta = _CLASSES["MetaGraphDef"].FromString(pristine)
            for _ in range(int(rng.integers(1, 3))):
                _mutate_meta_graph(rng, meta)
            meta_path.write_bytes(meta.SerializeToString())
        _outcome(lambda: signature_of(str(work / meta_path.stem)), outcomes, f"meta graph case {case} (seed {seed})",
                 slow)
    return outcomes
