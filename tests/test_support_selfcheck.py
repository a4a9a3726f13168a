"""Self-test of the test support: real servers answer, real builders write readable checkpoints."""

import os

import numpy as np
import pytest

try:
    import builders
    from servers import upload_dir
except ImportError:  # tests/ became a package
    from tests import builders
    from tests.servers import upload_dir

DATA = bytes(range(256)) * 64  # 16 KiB, every byte value


@pytest.mark.integration
def test_s3_write_and_range_read(s3_server, s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    path = f"{s3_bucket}/dir/blob.bin"
    fs.pipe_file(path, DATA)
    # s3fs's cat_file is (path, version_id=None, start=None, end=None): pass start/end by keyword.
    assert fs.cat_file(path, start=100, end=1100) == DATA[100:1100]
    assert fs.cat_file(path, start=-48) == DATA[-48:]
    assert fs.info(path)["size"] == len(DATA)
    assert fs.ls(s3_bucket, detail=False) == [f"{s3_bucket[5:]}/dir"]


@pytest.mark.integration
def test_s3_env_and_bucket_isolation(s3_server, s3_bucket):
    import boto3

    env = s3_server.env()
    assert env["AWS_ENDPOINT_URL"] == s3_server.endpoint_url
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    listing = client.list_objects_v2(Bucket=s3_bucket[len("s3://") :])
    assert listing["KeyCount"] == 0  # a fresh bucket per test


@pytest.mark.integration
def test_gcs_write_and_range_read(gcs_server, gcs_bucket):
    import gcsfs

    fs = gcsfs.GCSFileSystem(**gcs_server.storage_options())
    path = f"{gcs_bucket}/dir/blob.bin"
    fs.pipe_file(path, DATA)
    assert fs.cat_file(path, 100, 1100) == DATA[100:1100]
    assert fs.cat_file(path, start=len(DATA) - 48) == DATA[-48:]
    assert fs.info(path)["size"] == len(DATA)
    assert fs.ls(gcs_bucket, detail=False) == [f"{gcs_bucket[5:]}/dir"]
    # concurrent range reads (needs the deep accept backlog GCSServer configures)
    paths = [path] * 32
    starts = list(range(0, 32 * 100, 100))
    got = fs.cat_ranges(paths, starts, [s + 10 for s in starts])
    assert got == [DATA[s : s + 10] for s in starts]


@pytest.mark.integration
def test_upload_checkpoint_dir_to_buckets(tmp_path, s3_server, s3_bucket, gcs_server, gcs_bucket):
    import gcsfs
    import s3fs

    info = builders.dtype_zoo_checkpoint(tmp_path / "zoo")
    index = open(info["prefix"] + ".index", "rb").read()
    for fs, bucket in (
        (s3fs.S3FileSystem(**s3_server.storage_options()), s3_bucket),
        (gcsfs.GCSFileSystem(**gcs_server.storage_options()), gcs_bucket),
    ):
        written = upload_dir(fs, info["dir"], f"{bucket}/ckpt")
        names = sorted(os.path.basename(p) for p in written)
        assert names == sorted(os.listdir(info["dir"]))
        remote_index = f"{bucket}/ckpt/model.ckpt.index"
        size = fs.info(remote_index)["size"]
        assert size == len(index)
        # the 48-byte SSTable footer, fetched as an explicit byte range
        assert fs.cat_file(remote_index, start=size - 48, end=size) == index[-48:]


def test_dtype_zoo_reads_back(tmp_path):
    info = builders.dtype_zoo_checkpoint(tmp_path)
    import tensorflow as tf

    reader = tf.train.load_checkpoint(info["prefix"])
    shapes = reader.get_variable_to_shape_map()
    assert set(shapes) == {f"v_{d}" for d in builders.SUPPORTED_DTYPES} | {"v_empty"}
    assert shapes["v_empty"] == [0, 3] and shapes["v_int32"] == []
    for key, expected in info["values"].items():
        builders.assert_values_equal(reader.get_tensor(key), expected, key)
    assert reader.get_tensor("v_string").tolist() == [b"", b"hello", b"\x00\xffbinary", "\u00fcn\u00efcode".encode()]
    assert str(reader.get_variable_to_dtype_map()["v_bfloat16"].name) == "bfloat16"
    assert os.path.exists(info["meta"])


def test_bert_like_and_template(tmp_path):
    import tensorflow as tf

    bert = builders.bert_like_checkpoint(tmp_path / "bert", step=7)
    assert bert["prefix"].endswith("model.ckpt-7") and os.path.exists(bert["meta"])
    builders.assert_checkpoint_matches(bert)
    reader = tf.train.load_checkpoint(bert["prefix"])
    shapes = reader.get_variable_to_shape_map()
    assert shapes["bert/embeddings/word_embeddings"] == [100, 16]
    assert shapes["bert/encoder/layer_1/attention/self/query/kernel/adam_m"] == [16, 16]
    assert shapes["bert/embeddings/word_embeddings/Adam_1"] == [100, 16]
    assert reader.get_tensor("global_step") == 1000
    assert reader.get_tensor("global_step").dtype == np.int64

    tpl = builders.renamed_model_template(tmp_path / "tpl")
    builders.assert_checkpoint_matches(tpl)
    t_shapes = tf.train.load_checkpoint(tpl["prefix"]).get_variable_to_shape_map()
    assert t_shapes["model/embeddings/word_embeddings"] == [120, 16]
    assert t_shapes["head/dense/kernel"] == [16, 3]
    same = {k[len("bert/") :] for k in shapes if k.startswith("bert/") and "adam" not in k.lower()}
    assert same == {k[len("model/") :] for k in t_shapes if k.startswith("model/")}


def test_partitioned_tf2_keras_big(tmp_path):
    part = builders.partitioned_checkpoint(tmp_path / "part")
    builders.assert_checkpoint_matches(part)
    assert part["values"]["emb"].shape == (10, 4)
    assert [p["shape"][0] for p in part["partitions"]["emb"]] == [4, 3, 3]

    tf2 = builders.tf2_checkpoint(tmp_path / "tf2", with_optimizer=True)
    builders.assert_checkpoint_matches(tf2)
    assert "model/dense/w/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE" in tf2["values"]

    k = builders.keras_checkpoint(tmp_path / "keras", "functional", with_optimizer=True)
    builders.assert_checkpoint_matches(k)
    assert os.path.exists(k["keras"])
    for label, key in k["weight_keys"].items():
        builders.assert_values_equal(k["values"][key], k["weights"][label], label)

    big = builders.big_index_checkpoint(tmp_path / "big")
    assert big["index_size"] > 64 * 1024
    builders.assert_checkpoint_matches(big)
