"""The stream strategy and output publishing: outputs loaded back by TF, failures leave nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import builders
import fsspec
import numpy as np
import pytest
from servers import upload_dir

import warmstart
from warmstart import CorruptCheckpointError, PlanError, StorageError, UsageError
from warmstart.examples import EXAMPLE_RULES
from warmstart.formats.bundle import BundleReader


@pytest.fixture
def bert(bert_dirs):
    return bert_dirs


def tf():
    import tensorflow

    return tensorflow


def test_bert_into_renamed_grown_model_streams_encoder_and_keeps_the_rest(bert, tmp_path):
    out = tmp_path / "out"
    report = warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    assert report.strategy == "stream" and report.ok
    assert tf().train.latest_checkpoint(str(out)) == str(out / "model.ckpt")
    got = builders.load_values(out / "model.ckpt")
    src = builders.load_values(next((bert / "src").glob("*.index")).with_suffix(""))
    tpl = builders.load_values(next((bert / "tpl").glob("*.index")).with_suffix(""))
    assert set(got) == set(tpl)  # a complete checkpoint for the target
    actions = {e.target: e.action for e in report.plan.entries}
    assert all(a == "copy" for n, a in actions.items() if n.startswith("model/encoder/"))
    assert actions["model/embeddings/word_embeddings"] == "skip"
    for name, value in got.items():
        if actions[name] == "copy":
            builders.assert_values_equal(value, src["bert/" + name[len("model/"):]], name)
        else:  # grown embedding (skip), head (null), global_step (excluded): initial values
            builders.assert_values_equal(value, tpl[name], name)
    manifest = json.loads((out / "warmstart.json").read_text())
    assert manifest["strategy"] == "stream" and manifest["plan"]["status"] == "ok"
    assert {t["key"] for t in manifest["checkpoint"]["tensors"]} == set(tpl)
    assert manifest["source"]["url"].endswith("model.ckpt-1000")


def test_output_loads_with_tf1_saver_in_the_targets_graph(bert, tmp_path):
    out = tmp_path / "out"
    warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    t = tf()
    meta = next((bert / "tpl").glob("*.meta"))
    graph = t.Graph()
    with graph.as_default():
        saver = t.compat.v1.train.import_meta_graph(str(meta))
        with t.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, t.train.latest_checkpoint(str(out)))
            kernel = next(v for v in t.compat.v1.global_variables() if v.op.name == "model/pooler/dense/kernel")
            value = sess.run(kernel)
    src = builders.load_values(next((bert / "src").glob("*.index")).with_suffix(""))
    np.testing.assert_array_equal(value, src["bert/pooler/dense/kernel"])


def assert_manifest_checksums_match_the_index(out: Path) -> None:
    """The manifest's per-tensor records (from the writer) are what the written index holds."""
    manifest = json.loads((out / "warmstart.json").read_text())
    reader = BundleReader(str(out))
    expected = []
    for key, rec in sorted(reader.records.items()):
        crc = [e.crc32c for _, e in rec.slices] if rec.slices else rec.entry.crc32c
        expected.append({"key": key, "dtype": rec.dtype, "shape": list(rec.shape), "bytes": rec.stored_bytes,
                         "crc32c_masked": crc})
    assert manifest["checkpoint"]["tensors"] == expected


def test_tf1_source_into_tf2_object_based_template(tmp_path):
    t = tf()
    tpl_info = builders.tf2_checkpoint(tmp_path / "tpl", seed=1)
    tpl_table = warmstart.read_table(tpl_info["prefix"])
    # A TF1 checkpoint with the same variables under TF1-style names.
    src_values = {f"net/{v.name[len('model/'):]}": np.full(v.shape, 7, dtype=v.dtype)
                  for v in tpl_table.variables if v.name.startswith("model/")}
    src = builders.tf1_checkpoint(tmp_path / "src", src_values)
    out = tmp_path / "out"
    report = warmstart.transfer(src["prefix"], tpl_info["prefix"], str(out),
                                rules={"rename": [["model/(.*)", r"net/\1"]]})
    assert report.plan.counts["copy"] == len(src_values)
    module = builders._tf2_module(seed=2)
    status = t.train.Checkpoint(model=module).restore(t.train.latest_checkpoint(str(out)))
    status.assert_existing_objects_matched()
    for v in module.variables:
        np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 7, dtype=v.dtype.as_numpy_dtype))
    assert_manifest_checksums_match_the_index(out)  # the object graph is a string tensor


def test_bf16_source_casts_to_float32_when_asked(tmp_path):
    import ml_dtypes

    value = np.arange(12, dtype=np.float32).reshape(3, 4).astype(ml_dtypes.bfloat16)
    src = builders.tf1_checkpoint(tmp_path / "src", {"w": value})
    tpl = builders.tf1_checkpoint(tmp_path / "tpl", {"w": np.zeros((3, 4), np.float32)})
    with pytest.raises(PlanError, match="dtype bfloat16 in the source, float32 in the target"):
        warmstart.transfer(src["prefix"], tpl["prefix"], str(tmp_path / "fail"))
    assert not (tmp_path / "fail").exists() or not any((tmp_path / "fail").iterdir())
    out = tmp_path / "out"
    report = warmstart.transfer(src["prefix"], tpl["prefix"], str(out), rules={"on_dtype_mismatch": "cast"})
    assert report.plan.counts["cast"] == 1
    got = builders.load_values(out / "model.ckpt")["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, value.astype(np.float32))
    assert_manifest_checksums_match_the_index(out)


def test_partitioned_source_into_plain_and_partitioned_targets(tmp_path):
    part = builders.partitioned_checkpoint(tmp_path / "part")
    full = builders.load_values(part["prefix"])
    plain_tpl = builders.tf1_checkpoint(tmp_path / "plain", {k: np.zeros_like(v) for k, v in full.items()})
    out = tmp_path / "out-plain"
    warmstart.transfer(part["prefix"], plain_tpl["prefix"], str(out))
    for k, v in builders.load_values(out / "model.ckpt").items():
        builders.assert_values_equal(v, full[k], k)
    # Into a partitioned template (itself): slices are written as TF1 Saver writes them.
    out2 = tmp_path / "out-part"
    warmstart.transfer(part["prefix"], part["prefix"], str(out2))
    assert warmstart.read_table(str(out2))["emb"].partitions == 3
    assert_manifest_checksums_match_the_index(out2)
    for k, v in builders.load_values(out2 / "model.ckpt").items():
        builders.assert_values_equal(v, full[k], k)


def test_strings_and_every_dtype_stream_unchanged(tmp_path):
    zoo = builders.dtype_zoo_checkpoint(tmp_path / "zoo")
    out = tmp_path / "out"
    warmstart.transfer(zoo["prefix"], zoo["prefix"], str(out))
    expected = builders.load_values(zoo["prefix"])
    got = builders.load_values(out / "model.ckpt")
    for k in expected:
        builders.assert_values_equal(got[k], expected[k], k)
    assert_manifest_checksums_match_the_index(out)


def test_small_chunks_copy_large_tensors_exactly(tmp_path):
    big = np.random.default_rng(0).standard_normal((300, 1000)).astype(np.float32)
    src = builders.tf1_checkpoint(tmp_path / "src", {"big": big})
    out = tmp_path / "out"
    report = warmstart.transfer(src["prefix"], src["prefix"], str(out), chunk_bytes=4096)
    np.testing.assert_array_equal(builders.load_values(out / "model.ckpt")["big"], big)
    assert report.bytes_read == big.nbytes


def test_signature_target_writes_only_transferred_variables_and_lists_the_absent(bert, tmp_path):
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps(warmstart.signature_of(str(bert / "tpl")).to_json()))
    out = tmp_path / "out"
    report = warmstart.transfer(str(bert / "src"), str(sig), str(out), rules=EXAMPLE_RULES)
    manifest = json.loads((out / "warmstart.json").read_text())
    assert "head/dense/kernel" in manifest["absent"]
    assert set(builders.load_values(out / "model.ckpt")) == {e.target for e in report.plan.transferred}


def test_a_failed_plan_writes_nothing(bert, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(PlanError) as info:
        warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out))
    assert info.value.plan is not None and not info.value.plan.ok
    assert not out.exists()


def test_corrupt_source_mid_copy_leaves_no_visible_output(bert, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(bert / "src", src)
    data = next(src.glob("*.data-*"))
    entry = BundleReader(str(src)).records["bert/encoder/layer_1/output/dense/kernel"].entry
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match="CRC32C"):
        warmstart.transfer(str(src), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    assert not out.exists()  # the output location is left as it was found: no directory, no half checkpoint


def test_truncated_local_source_is_refused_before_it_is_mapped(bert, tmp_path):
    """Local sources are mapped (mmap): touching a mapping past the end of a file would kill the
    process (SIGBUS), so a data file shorter than its index says must fail first, clearly."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(bert / "src", src)
    data = next(src.glob("*.data-*"))
    entry = BundleReader(str(src)).records["bert/encoder/layer_1/output/dense/kernel"].entry  # copied by the plan
    with open(data, "r+b") as f:
        f.truncate(entry.offset + entry.size // 2)
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match=r"data-00000-of-00001: tensor .* needs bytes .* but the file has .*truncated"):
        warmstart.transfer(str(src), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    assert not out.exists()


def test_local_source_into_an_object_store_output_writes_the_mapped_bytes(bert, tmp_path):
    """The kernel copies local-to-local only; into any other filesystem the mapped bytes are written."""
    mem = fsspec.filesystem("memory")
    out = "memory://ws-test-local-to-memory/out"
    try:
        report = warmstart.transfer(str(bert / "src"), str(bert / "tpl"), out, rules=EXAMPLE_RULES)
        assert report.ok
        got = BundleReader(out)
        src = BundleReader(str(bert / "src"))
        for e in report.plan.transferred:
            np.testing.assert_array_equal(got.read(e.target_key), src.read(e.source_key), err_msg=e.target)
    finally:
        mem.rm("/ws-test-local-to-memory", recursive=True)


def test_kernel_copy_appends_exact_ranges_and_reports_what_it_cannot_copy(tmp_path):
    from warmstart.storage.localio import kernel_copy

    payload = bytes(range(256)) * 64
    (tmp_path / "src").write_bytes(payload)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    r, w = os.pipe()
    try:
        assert kernel_copy(src, dst, 10, 100) == 100
        assert kernel_copy(src, dst, 5000, 3000) == 3000
        assert kernel_copy(src, dst, len(payload) - 6, 100) == 6  # the source ends: the caller sees it
        assert kernel_copy(src, w, 0, 100) == 0  # not a regular file: the caller writes instead
    finally:
        for fd in (src, dst, r, w):
            os.close(fd)
    assert (tmp_path / "dst").read_bytes() == payload[10:110] + payload[5000:8000] + payload[-6:]


def test_output_inside_the_source_is_refused_and_the_source_untouched(bert, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(bert / "src", src)
    before = sorted(os.listdir(src))
    with pytest.raises(StorageError, match="inside the directory of input"):
        warmstart.transfer(str(src), str(bert / "tpl"), str(src / "out"), rules=EXAMPLE_RULES)
    with pytest.raises(StorageError):
        warmstart.transfer(str(src), str(bert / "tpl"), str(src), rules=EXAMPLE_RULES)
    assert sorted(os.listdir(src)) == before


def test_non_empty_output_needs_overwrite(bert, tmp_path):
    out = tmp_path / "out"
    warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    with pytest.raises(StorageError, match="not empty"):
        warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES)
    report = warmstart.transfer(str(bert / "src"), str(bert / "tpl"), str(out), rules=EXAMPLE_RULES,
                                overwrite=True)
    assert report.ok and tf().train.latest_checkpoint(str(out))


def test_stream_refuses_targets_it_cannot_serve(tmp_path):
    from warmstart.pipeline import choose_strategy
    from warmstart.tables import VariableTable

    keras_table = VariableTable.of([], "keras:m", "keras")
    with pytest.raises(UsageError, match="stream strategy needs a template"):
        choose_strategy("stream", keras_table)
    assert choose_strategy("auto", keras_table) == "restore"
    with pytest.raises(UsageError, match="nothing to build"):
        choose_strategy("restore", VariableTable.of([], "sig", "signature"))


@pytest.mark.integration
def test_stream_from_s3_to_gcs(bert, tmp_path, s3_server, s3_bucket, gcs_server, gcs_bucket, monkeypatch):
    s3 = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(s3, bert / "src", f"{s3_bucket}/src")
    for k, v in {**s3_server.env(), **gcs_server.env()}.items():
        monkeypatch.setenv(k, v)
    from servers import clear_fs_caches

    clear_fs_caches()
    out = f"{gcs_bucket}/warm/1"
    report = warmstart.transfer(f"{s3_bucket}/src", str(bert / "tpl"), out, rules=EXAMPLE_RULES)
    assert report.output.rstrip("/").endswith("warm/1")
    gcs = fsspec.filesystem("gcs", **gcs_server.storage_options())
    local = tmp_path / "downloaded"
    local.mkdir()
    for path in gcs.ls(out.replace("gs://", ""), detail=False):
        gcs.get_file(path, str(local / Path(path).name))
    assert tf().train.latest_checkpoint(str(local)) == str(local / "model.ckpt")
    got = builders.load_values(local / "model.ckpt")
    src = builders.load_values(next((bert / "src").glob("*.index")).with_suffix(""))
    np.testing.assert_array_equal(got["model/pooler/dense/kernel"], src["bert/pooler/dense/kernel"])


@pytest.mark.integration
def test_partial_transfer_from_s3_reads_only_selected_bytes_with_merged_requests(tmp_path, s3_server, s3_bucket):
    from warmstart.formats.bundle import BundleReader
    from warmstart.formats.bundle.writer import BundleWriter
    from warmstart.storage import resolve
    from warmstart.strategies.stream import StreamStats, _Copy, copy_tensors

    values = {f"layer_{i:03d}/w": np.full((64,), i, np.float32) for i in range(200)}  # 256 B each
    builders.tf1_checkpoint(tmp_path / "src", values)
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, tmp_path / "src", f"{s3_bucket}/src")
    reader = BundleReader(f"{s3_bucket}/src", s3_server.storage_options())
    # Every 10th tensor (10%): gaps are too wide to merge, so bytes read == selected bytes.
    picked = [k for k in sorted(values) if int(k[6:9]) % 10 == 0]
    stats = StreamStats()
    writer = BundleWriter(resolve(str(tmp_path / "out" / "model.ckpt")))
    copy_tensors(reader, [_Copy(k, k, "float32", k) for k in picked], writer, 8 << 20, stats)
    writer.finish()
    assert stats.bytes_read == 256 * len(picked) and stats.requests == len(picked)
    # All of them, adjacent: merged into a single ranged request.
    stats = StreamStats()
    writer = BundleWriter(resolve(str(tmp_path / "out2" / "model.ckpt")))
    copy_tensors(reader, [_Copy(k, k, "float32", k) for k in sorted(values)], writer, 8 << 20, stats)
    writer.finish()
    assert stats.requests == 1 and stats.bytes_read == 256 * 200
    got = builders.load_values(tmp_path / "out2" / "model.ckpt")
    for k, v in values.items():
        np.testing.assert_array_equal(got[k], v)


def test_space_reserved_ahead_and_not_written_is_not_part_of_the_data_file(tmp_path):
    from warmstart.formats.bundle.writer import BundleWriter
    from warmstart.storage import resolve

    writer = BundleWriter(resolve(str(tmp_path / "out" / "model.ckpt")))
    writer.add_array("a", np.arange(6, dtype=np.float32), "float32")
    writer.reserve(4 << 20)  # more than follows: the kernel copy's blocks are allocated before it
    writer.add_array("b", np.full((3,), 7, np.int64), "int64")
    writer.finish()
    data = next((tmp_path / "out").glob("*.data-*"))
    assert data.stat().st_size == writer.bytes_written == 6 * 4 + 3 * 8
    got = builders.load_values(tmp_path / "out" / "model.ckpt")  # read back by TF
    np.testing.assert_array_equal(got["a"], np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(got["b"], np.full((3,), 7, np.int64))


def test_space_the_filesystem_refuses_is_a_storage_error_before_any_byte_is_copied(tmp_path):
    from warmstart.formats.bundle.writer import BundleWriter
    from warmstart.storage import resolve

    writer = BundleWriter(resolve(str(tmp_path / "out" / "model.ckpt")))
    with pytest.raises(StorageError, match="writing .*model.ckpt.data-00000-of-00001 failed"):
        writer.reserve(1 << 62)  # past any file size the filesystem allows (EFBIG), refused before allocating
    writer.abort()
    assert list((tmp_path / "out").iterdir()) == []


def test_stream_path_never_imports_tensorflow(bert, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, warmstart\n"
        "from warmstart.examples import EXAMPLE_RULES\n"
        f"r = warmstart.transfer({str(bert / 'src')!r}, {str(bert / 'tpl')!r}, {str(tmp_path / 'out')!r},"
        " rules=EXAMPLE_RULES)\n"
        "assert r.strategy == 'stream'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'prefect')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
