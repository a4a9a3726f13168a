"""The TF-free reader against checkpoints TensorFlow wrote, compared tensor by tensor with
``tf.train.load_checkpoint``; locally, in memory, on a real S3 API and on the GCS emulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import builders
import fsspec
import numpy as np
import pytest
from servers import upload_dir

from warmstart import CorruptCheckpointError, InputNotFoundError, read_table
from warmstart.formats.bundle import BundleReader


def assert_reads_like_tf(url: str, prefix: str, storage_options=None) -> BundleReader:
    reader = BundleReader(url, storage_options)
    expected = builders.load_values(prefix)
    assert set(reader.records) - {"_CHECKPOINTABLE_OBJECT_GRAPH"} == set(expected)
    for key, value in expected.items():
        builders.assert_values_equal(reader.read(key), value, key)
    return reader


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return builders.dtype_zoo_checkpoint(tmp_path_factory.mktemp("zoo"))


def test_every_dtype_reads_like_tf_including_bf16_half_and_strings(zoo):
    reader = assert_reads_like_tf(zoo["prefix"], zoo["prefix"])
    table = read_table(zoo["prefix"])
    assert {v.dtype for v in table.variables} >= {"bfloat16", "float16", "string", "bool", "complex64"}
    assert table["v_empty"].shape == (0, 3)
    assert reader.read("v_empty").shape == (0, 3)


def test_tf1_saver_checkpoint_by_directory_and_by_prefix(tmp_path):
    info = builders.bert_like_checkpoint(tmp_path / "bert")
    assert_reads_like_tf(str(tmp_path / "bert"), info["prefix"])
    table = read_table(info["prefix"])
    assert table.kind == "tf1-checkpoint"
    assert "bert/encoder/layer_0/attention/self/query/kernel" in table
    assert table["global_step"].dtype == "int64"


def test_partitioned_variable_is_one_logical_variable(tmp_path):
    info = builders.partitioned_checkpoint(tmp_path)
    reader = assert_reads_like_tf(info["prefix"], info["prefix"])
    table = read_table(info["prefix"])
    assert table["emb"].shape == (10, 4) and table["emb"].partitions == 3
    assert len(table) == 2  # the slices are not variables of their own
    assert reader.read("emb").shape == (10, 4)


def test_tf2_checkpoint_names_are_object_paths_with_raw_keys_kept(tmp_path):
    info = builders.tf2_checkpoint(tmp_path)
    assert_reads_like_tf(info["prefix"], info["prefix"])
    table = read_table(info["prefix"])
    assert table.kind == "tf2-checkpoint"
    for v in table.variables:
        assert v.key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
        assert v.name == v.key[: -len("/.ATTRIBUTES/VARIABLE_VALUE")]


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_keras_weights_get_the_same_names_with_or_without_a_saved_optimizer(tmp_path, kind):
    plain = builders.keras_checkpoint(tmp_path / "plain", kind)
    with_opt = builders.keras_checkpoint(tmp_path / "opt", kind, with_optimizer=True)
    assert_reads_like_tf(with_opt["prefix"], with_opt["prefix"])
    plain_t, opt_t = read_table(plain["prefix"]), read_table(with_opt["prefix"])
    model_names = {n for n in plain_t if n.startswith("model/")}
    assert model_names and model_names <= set(opt_t)
    # TF itself keyed the weights through the optimizer; the raw key is kept for reading.
    kernel = next(n for n in model_names if n.endswith("_kernel"))
    assert opt_t[kernel].key.startswith("optimizer/_trainable_variables/")
    assert {n for n in opt_t if n.startswith("optimizer/")}  # slots stay visible, under optimizer/


def test_big_index_with_many_blocks(tmp_path):
    info = builders.big_index_checkpoint(tmp_path, n=3000, name_pad=100)
    assert builders.count_index_data_blocks(info["prefix"] + ".index") > 1
    table = read_table(info["prefix"])
    assert len(table) == 3000


def test_memory_filesystem(tmp_path, zoo):
    mem = fsspec.filesystem("memory")
    upload_dir(mem, Path(zoo["prefix"]).parent, "/zoo")
    assert_reads_like_tf("memory://zoo", zoo["prefix"])


@pytest.mark.integration
def test_reads_from_a_real_s3_api(s3_server, s3_bucket, tmp_path):
    info = builders.bert_like_checkpoint(tmp_path / "bert")
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, tmp_path / "bert", f"{s3_bucket}/runs/1")
    reader = assert_reads_like_tf(f"{s3_bucket}/runs/1", info["prefix"], s3_server.storage_options())
    assert reader.url.startswith("s3://")


@pytest.mark.integration
def test_reads_from_the_gcs_emulator(gcs_server, gcs_bucket, tmp_path):
    info = builders.partitioned_checkpoint(tmp_path / "part")
    fs = fsspec.filesystem("gcs", **gcs_server.storage_options())
    upload_dir(fs, tmp_path / "part", f"{gcs_bucket}/runs/1")
    reader = assert_reads_like_tf(f"{gcs_bucket}/runs/1", info["prefix"], gcs_server.storage_options())
    assert reader.url.startswith("gs://") or reader.url.startswith("gcs://")


# --------------------------------------------------------------------------- bad inputs


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(InputNotFoundError, match="no checkpoint at .*nothing"):
        read_table(str(tmp_path / "nothing"))


def test_directory_with_one_checkpoint_and_no_state_file_uses_it_and_says_so(tmp_path, zoo, caplog):
    d = tmp_path / "copy"
    shutil.copytree(Path(zoo["prefix"]).parent, d)
    (d / "checkpoint").unlink()
    table = read_table(d)  # a pathlib.Path, as users pass it
    assert set(table) == set(read_table(zoo["prefix"]))
    assert "no 'checkpoint' state file; using its only checkpoint" in caplog.text


def test_directory_with_several_checkpoints_and_no_state_file_lists_them(tmp_path, zoo):
    d = tmp_path / "copy"
    shutil.copytree(Path(zoo["prefix"]).parent, d)
    (d / "checkpoint").unlink()
    for f in list(d.glob("model.ckpt*")):
        shutil.copy(f, d / f.name.replace("model.ckpt", "other.ckpt"))
    with pytest.raises(InputNotFoundError, match="no 'checkpoint' state file and 2 checkpoints .*model.ckpt.*other.ckpt"):
        read_table(str(d))


def test_state_file_pointing_outside_is_refused(tmp_path, zoo):
    d = tmp_path / "evil"
    d.mkdir()
    outside = str(Path(zoo["prefix"]))
    (d / "checkpoint").write_text(f'model_checkpoint_path: "{outside}"\n')
    with pytest.raises(InputNotFoundError, match="points outside its directory"):
        read_table(str(d))
    (d / "checkpoint").write_text('model_checkpoint_path: "../zoo/model.ckpt"\n')
    with pytest.raises(InputNotFoundError, match="points outside its directory"):
        read_table(str(d))


def test_absolute_state_file_path_is_followed_by_base_name_after_a_move(tmp_path, zoo):
    moved = tmp_path / "moved"
    shutil.copytree(Path(zoo["prefix"]).parent, moved)  # its state file still names the old absolute path
    assert read_table(str(moved)).origin.startswith(f"file://{moved}")


def test_corrupt_index_is_a_clear_error(tmp_path, zoo):
    d = tmp_path / "bad"
    shutil.copytree(Path(zoo["prefix"]).parent, d)
    index = next(d.glob("*.index"))
    data = bytearray(index.read_bytes())
    data[20] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"\.index: not a valid checkpoint index: .*checksum"):
        read_table(str(d))
    index.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CorruptCheckpointError, match="bad magic"):
        read_table(str(d))


def test_corrupt_or_truncated_data_fails_the_crc(tmp_path, zoo):
    d = tmp_path / "bad"
    shutil.copytree(Path(zoo["prefix"]).parent, d)
    data_file = next(d.glob("*.data-*"))
    reader = BundleReader(str(d))
    entry = reader.records["v_float32"].entry
    raw = bytearray(data_file.read_bytes())
    raw[entry.offset] ^= 0x01
    data_file.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="'v_float32' fails its CRC32C"):
        BundleReader(str(d)).read("v_float32")
    data_file.write_bytes(bytes(raw[: entry.offset]))
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        BundleReader(str(d)).read("v_float32")


def test_reading_a_tensor_reads_only_its_bytes(tmp_path):
    info = builders.tf1_checkpoint(tmp_path, {"a": np.arange(1000, dtype=np.float32),
                                              "b": np.ones((4, 4), np.float64)})
    reader = BundleReader(info["prefix"])
    np.testing.assert_array_equal(reader.read("b"), np.ones((4, 4)))
    assert reader.records["b"].stored_bytes == 128
