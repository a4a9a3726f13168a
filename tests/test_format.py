"""The low-level format pieces: SSTable, protos, OrderedCode slice keys, dtypes, CRC masking."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from warmstart.formats.bundle import checksums
from warmstart.formats.bundle._protos import (
    BundleEntry,
    BundleHeader,
    Slice,
    decode_entry,
    decode_header,
    encode_entry,
    encode_header,
)
from warmstart.formats.bundle._sstable import TableFormatError, TableWriter, read_table
from warmstart.formats.dtypes import by_enum, by_name, is_value_preserving_cast


def test_sstable_round_trips_many_keys_across_blocks():
    writer = TableWriter(block_size=4096)
    items = [(f"block_{i:05d}/w".encode(), bytes([i % 251]) * (i % 40)) for i in range(5000)]
    for k, v in items:
        writer.add(k, v)
    data = writer.finish()
    assert [(k, bytes(v)) for k, v in read_table(data)] == items


def test_sstable_writer_refuses_unsorted_keys():
    writer = TableWriter()
    writer.add(b"b", b"")
    with pytest.raises(ValueError, match="increasing order"):
        writer.add(b"a", b"")


def test_sstable_detects_a_flipped_byte_bad_magic_and_truncation():
    writer = TableWriter()
    for i in range(50):
        writer.add(f"k{i:03d}".encode(), b"value")
    data = bytearray(writer.finish())
    flipped = bytearray(data)
    flipped[10] ^= 0xFF
    with pytest.raises(TableFormatError, match="checksum mismatch"):
        list(read_table(bytes(flipped)))
    with pytest.raises(TableFormatError, match="bad magic"):
        list(read_table(bytes(data[:-1])))
    with pytest.raises(TableFormatError, match="shorter than"):
        list(read_table(bytes(data[:20])))


def test_bundle_protos_round_trip():
    header = BundleHeader(num_shards=3, endianness=0, producer=1, min_consumer=0)
    assert decode_header(encode_header(header)) == header
    entry = BundleEntry(dtype=14, shape=(3, 0, 7), shard_id=2, offset=123456789, size=42, crc32c=0xDEADBEEF)
    assert decode_entry(encode_entry(entry)) == entry
    sliced = BundleEntry(dtype=1, shape=(10, 4), slices=(Slice(((0, 4), (0, -1))), Slice(((4, 3), (0, -1)))))
    assert decode_entry(encode_entry(sliced)) == sliced


def test_bundle_protos_agree_with_tensorflows_own_on_both_runtimes_routes():
    """The messages are declared by hand: TF's generated classes are the oracle, both ways, on the upb
    route a process takes and on the public route any other protobuf runtime takes."""
    from tensorflow.core.protobuf import tensor_bundle_pb2

    from warmstart.formats import _schema
    from warmstart.formats.bundle import _protos

    public = _schema.message_classes("warmstart_tf.proto", _protos._PACKAGE, _protos._SCHEMA, _protos._ONEOFS,
                                     fast=False)
    assert type(_protos._Entry).__module__.startswith("google._upb")  # this runtime takes the fast route
    entries = [
        BundleEntry(dtype=9, shape=(1 << 40, 3), shard_id=7, offset=(1 << 45) + 3, size=1 << 33, crc32c=0xFFFFFFFF),
        BundleEntry(dtype=1, shape=(), offset=0, size=4, crc32c=1),
        BundleEntry(dtype=1, shape=(10, 4), slices=(Slice(((0, 4), (0, -1))), Slice(((4, 6), (2, 0))))),
    ]
    for entry in entries:
        ours = encode_entry(entry)
        theirs = tensor_bundle_pb2.BundleEntryProto.FromString(ours)
        assert (theirs.dtype, tuple(d.size for d in theirs.shape.dim), theirs.shard_id, theirs.offset, theirs.size,
                theirs.crc32c) == (entry.dtype, entry.shape, entry.shard_id, entry.offset, entry.size, entry.crc32c)
        assert [[(e.start, e.length if e.HasField("length") else -1) for e in s.extent] for s in theirs.slices] == \
            [list(s.extent) for s in entry.slices]
        assert decode_entry(theirs.SerializeToString()) == entry
        assert public["BundleEntryProto"].FromString(ours).SerializeToString(deterministic=True) == ours
    header = tensor_bundle_pb2.BundleHeaderProto(num_shards=4, endianness=1)
    header.version.producer, header.version.min_consumer = 1, 0
    assert decode_header(header.SerializeToString()) == BundleHeader(4, 1, 1, 0)
    assert public["BundleHeaderProto"].FromString(header.SerializeToString()).num_shards == 4


def test_schema_descriptors_are_what_protobuf_itself_builds_maps_bytes_and_oneofs_included():
    from google.protobuf import descriptor_pb2, text_format

    from warmstart.formats import _schema

    schema = {"Node": [("name", 1, "string", False), ("attr", 5, "map:Value", False), ("raw", 8, "bytes", True)],
              "Value": [("i", 3, "int64", False), ("n", 4, "int32", False)]}
    built = descriptor_pb2.FileDescriptorProto.FromString(
        _schema.file_descriptor("t.proto", "pkg", schema, {"Value": ("kind", "i")}))
    node, value = built.message_type
    (entry,) = node.nested_type
    assert (entry.name, entry.options.map_entry, [f.name for f in entry.field]) == ("AttrEntry", True, ["key", "value"])
    assert node.field[1].type_name == ".pkg.Node.AttrEntry" and node.field[1].label == node.field[1].LABEL_REPEATED
    assert node.field[2].type == node.field[2].TYPE_BYTES and value.field[0].oneof_index == 0
    for fast in (True, False):
        Node = _schema.message_classes("t.proto", "pkg", schema, {"Value": ("kind", "i")}, fast=fast)["Node"]
        msg = text_format.Parse('name: "a" attr { key: "k" value { i: 0 } } raw: "\\001"', Node())
        again = Node.FromString(msg.SerializeToString())
        assert again.name == "a" and again.attr["k"].HasField("i") and again.raw == [b"\x01"]


def test_reading_a_checkpoint_index_imports_no_pure_python_protobuf_machinery():
    probe = ("import sys, warmstart.formats.bundle._protos\n"
             "print(sorted(m for m in ('google.protobuf.descriptor_pool', 'google.protobuf.descriptor_pb2', "
             "'google.protobuf.internal.python_message') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_crc_mask_round_trips():
    crc = checksums.crc32c(b"hello")
    assert checksums.unmask(checksums.mask(crc)) == crc
    assert checksums.extend(checksums.crc32c(b"hel"), b"lo") == crc


def test_crc32c_is_the_castagnoli_crc_loaded_without_the_crc32c_package_init(tmp_path):
    assert checksums.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert checksums.extend(checksums.crc32c(memoryview(b"1234")), memoryview(b"56789")) == 0xE3069283
    # The package's __init__ looks its version up in every installed distribution's metadata: not run.
    probe = ("import sys, warmstart.formats.bundle.checksums as c; print(c.HARDWARE, 'crc32c' in sys.modules)\n"
             "import crc32c; print(crc32c.crc32c(b'abc') == c.crc32c(b'abc'))")  # the package still imports after
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == [str(checksums.HARDWARE), "False", "True"]


def test_crc32c_falls_back_to_importing_a_package_laid_out_otherwise(tmp_path):
    fake = tmp_path / "crc32c"
    fake.mkdir()
    (fake / "__init__.py").write_text("hardware_based = False\ndef crc32c(data, value=0):\n    return 1234\n")
    probe = "import warmstart.formats.bundle.checksums as c; print(c.HARDWARE, c.crc32c(b'x'))"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
                          timeout=120)
    assert done.stdout.split() == ["False", "1234"]


def test_dtype_table_covers_tf_enums():
    assert by_enum(14).name == "bfloat16" and by_name("half").name == "float16"
    assert by_name("bfloat16").itemsize == 2 and by_name("string").itemsize is None


@pytest.mark.parametrize("src, dst, exact", [
    ("bfloat16", "float32", True), ("float16", "float32", True), ("float32", "float64", True),
    ("float32", "bfloat16", False), ("float16", "bfloat16", False), ("bfloat16", "float16", False),
    ("int8", "int32", True), ("int32", "int8", False), ("uint8", "int16", True), ("int8", "uint8", False),
    ("int32", "float32", False), ("int32", "float64", True), ("int16", "float32", True),
    ("bool", "int8", True), ("float32", "int32", False), ("complex64", "complex128", True),
])
def test_value_preserving_casts(src, dst, exact):
    assert is_value_preserving_cast(src, dst) is exact


def test_entry_decoder_takes_large_values_and_refuses_broken_bytes():
    entries = [
        BundleEntry(dtype=1, shape=(), offset=0, size=4, crc32c=1),
        BundleEntry(dtype=9, shape=(1 << 40, 3), shard_id=7, offset=(1 << 45) + 3, size=1 << 33, crc32c=0xFFFFFFFF),
        BundleEntry(dtype=7, shape=(0,), offset=12, size=0, crc32c=0),
        BundleEntry(dtype=1, shape=(10, 4), slices=(Slice(((0, 4), (0, -1))),)),
    ]
    for entry in entries:
        assert decode_entry(encode_entry(entry)) == entry
    with pytest.raises(ValueError, match="malformed bundle entry"):
        decode_entry(encode_entry(entries[1])[:-2])
