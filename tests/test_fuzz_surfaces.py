"""Seeded fuzzing of the newer untrusted surfaces, each in a child process under a memory cap: rules files
(YAML and JSON), a .keras archive's config.json, the archive itself (members, declared sizes,
compression), a sharded .weights.json index and the MetaGraph beside a TF1 template (its Saver's keys). Every case is a result or a typed WarmStartError, within
seconds; anything else (a crash, a RecursionError, a MemoryError under the cap, a hang) fails the test.
The mutators are in tests/hostile.py."""

from __future__ import annotations

import json

import pytest
from test_bounds import run_capped

TF_CAP = 4 << 30  # TensorFlow reserves ~1.4 GiB of address space at import


def _run(code: str, *args: str, cap: int = 1 << 30) -> dict[str, int]:
    out = run_capped(code, *args, cap=cap)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fuzzed_rules_files_load_and_plan_or_are_usage_errors(tmp_path):
    totals = _run("""
        import json, sys, hostile
        totals = {"ok": 0, "refused": 0}
        for seed in range(3):
            for k, v in hostile.fuzz_rules(sys.argv[1], 200, seed).items():
                totals[k] += v
        print(json.dumps(totals))
    """, str(tmp_path))
    assert totals["ok"] + totals["refused"] == 600 and totals["ok"] > 0 and totals["refused"] > 0, totals


@pytest.fixture(scope="module")
def keras_inputs(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("fuzz-keras")
    inputs = keras.Input((4,), name="x")
    h = keras.layers.Dense(5, name="enc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.BatchNormalization(name="bn")(h)))
    model.save(root / "m.keras")
    model.save_weights(root / "sharded" / "model.weights.json", max_shard_size=0.0000002) \
        if (root / "sharded").mkdir() is None else None
    return root


def test_fuzzed_keras_configs_build_a_table_or_are_typed_errors(keras_inputs, tmp_path):
    totals = _run("""
        import json, sys, hostile
        print(json.dumps(hostile.fuzz_keras_config(sys.argv[1], sys.argv[2], 150, 0)))
    """, str(keras_inputs / "m.keras"), str(tmp_path), cap=TF_CAP)
    assert totals["ok"] + totals["refused"] == 150 and totals["refused"] > 0, totals


def test_fuzzed_keras_archives_read_or_are_typed_errors(keras_inputs, tmp_path):
    totals = _run("""
        import json, sys, hostile
        totals = {"ok": 0, "refused": 0}
        for seed in range(2):
            for k, v in hostile.fuzz_keras_archive(sys.argv[1], sys.argv[2], 150, seed).items():
                totals[k] += v
        print(json.dumps(totals))
    """, str(keras_inputs / "m.keras"), str(tmp_path))
    assert totals["ok"] + totals["refused"] == 300 and totals["ok"] > 0 and totals["refused"] > 0, totals


def test_fuzzed_shard_indexes_read_inside_their_directory_or_are_typed_errors(keras_inputs, tmp_path):
    assert len(list((keras_inputs / "sharded").glob("*_0*.weights.h5"))) >= 2, "the fixture must be sharded"
    totals = _run("""
        import json, sys, hostile
        print(json.dumps(hostile.fuzz_shard_index(sys.argv[1], sys.argv[2], 300, 0)))
    """, str(keras_inputs / "sharded"), str(tmp_path))
    assert totals["ok"] + totals["refused"] == 300 and totals["refused"] > 0, totals


def test_fuzzed_metagraphs_beside_a_template_name_it_or_are_typed_errors(tmp_path):
    import builders
    import numpy as np

    initial = {"a": np.ones(2, np.float32), "b": np.zeros(2, np.float32), "p": np.ones((4, 2), np.float32)}
    model = builders.saver_keyed_checkpoint(tmp_path / "model", initial, {"a": "b", "b": "renamed/b", "p": "x/p"},
                                            partitioned={"p": 2})
    totals = _run("""
        import json, sys, hostile
        print(json.dumps(hostile.fuzz_meta_graph(sys.argv[1], sys.argv[2], 600, 0)))
    """, model["dir"], str(tmp_path))
    assert totals["ok"] + totals["refused"] == 600 and totals["ok"] > 0 and totals["refused"] > 0, totals
