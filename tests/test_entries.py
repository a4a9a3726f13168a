"""Lying index entries: every entry must be what its shape and dtype take, inside its data file;
the slices of a partitioned tensor must tile its shape. Anything else is a corrupt input (exit 3)
with nothing published, never garbage bytes or uninitialized memory in an output."""

from __future__ import annotations

from pathlib import Path

import builders
import hostile
import numpy as np
import pytest

import warmstart
from warmstart import CorruptCheckpointError
from warmstart.formats.bundle._ordered_code import slice_key
from warmstart.formats.bundle._protos import Slice


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A TF1 checkpoint: w [40] float32, b [3] float64, s [2] strings."""
    root = tmp_path_factory.mktemp("plain")
    return builders.tf1_checkpoint(root / "ckpt", {
        "w": np.arange(40, dtype=np.float32), "b": np.ones(3, np.float64), "s": np.array([b"ab", b"cde"])})


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    """TF's own partitioned variable: emb [10, 4] in slices of 4, 3 and 3 rows."""
    return builders.partitioned_checkpoint(tmp_path_factory.mktemp("part") / "ckpt")


def damaged(source_info, tmp_path, edit):
    d = hostile.copy_checkpoint(source_info["dir"], tmp_path / "damaged")
    hostile.edit_entries(d, edit)
    return d


def _edit_key(key: bytes, **changes):
    def edit(found):
        found[key] = hostile.replace(found[key], **changes)
    return edit


@pytest.mark.parametrize("key, changes, match", [
    (b"w", {"shape": (41,)}, r"tensor 'w': shape \[41\] of float32 takes 164 bytes, but the index says 160"),
    (b"w", {"shape": (32,)}, r"takes 128 bytes, but the index says 160"),
    (b"w", {"shape": (1 << 62,)}, r"takes \d+ bytes, but the index says 160"),
    (b"w", {"shape": (1 << 31, 1 << 31, 4)}, r"but the index says 160"),
    (b"w", {"offset": -8}, r"tensor 'w' has offset -8"),
    (b"w", {"size": -160}, r"tensor 'w' has offset .* and size -160"),
    (b"w", {"shard_id": 3}, r"tensor 'w' is in shard 3 of 1"),
    (b"w", {"dtype": 999}, r"unknown dtype enum 999"),
    (b"w", {"shape": (-1,)}, r"unknown shape"),
    (b"w", {"unknown_rank": True}, r"unknown shape"),
    (b"s", {"shape": (1 << 40,)}, r"strings cannot fit"),
])
def test_an_entry_that_lies_about_its_size_is_refused_when_the_index_is_read(plain, tmp_path, key, changes, match):
    d = damaged(plain, tmp_path, _edit_key(key, **changes))
    with pytest.raises(CorruptCheckpointError, match=match):
        warmstart.read_table(d)
    with pytest.raises(CorruptCheckpointError, match=match):
        warmstart.plan(d, plain["prefix"])
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match=match):
        warmstart.transfer(d, plain["prefix"], out)
    assert not out.exists()


@pytest.mark.parametrize("offset_from_end", [0, 4, 159])
def test_an_entry_past_the_end_of_its_data_file_is_refused_before_it_is_read(plain, tmp_path, offset_from_end):
    size = hostile.entries(plain["dir"])[b"w"].size
    data = next(Path(plain["dir"]).glob("*.data-*")).stat().st_size
    d = damaged(plain, tmp_path, _edit_key(b"w", offset=data - size + 1 + offset_from_end))
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match=r"tensor 'w' needs bytes .* but the file has \d+ bytes"):
        warmstart.transfer(d, plain["prefix"], out)
    assert not out.exists()
    reader = warmstart.formats.bundle.BundleReader(str(d))
    with pytest.raises(CorruptCheckpointError, match="needs bytes"):
        reader.read("w")


def _slices_of(found, name: bytes):
    return {k: e for k, e in found.items() if k.startswith(b"\x00") and name in k}


def _reslice(extents: list[tuple[tuple[int, int], ...]], shape=(10, 4)):
    """Replace emb's slices by these extents (each slice entry sized and placed honestly)."""
    def edit(found):
        full = found[b"emb"]
        old = sorted(_slices_of(found, b"emb").items())
        for k, _ in old:
            del found[k]
        template = old[0][1]
        offset = 0
        for extent in extents:
            rows = [n if n != -1 else dim for (_, n), dim in zip(extent, shape)]
            nbytes = int(np.prod(rows)) * 4
            found[slice_key("emb", extent)] = hostile.replace(template, shape=tuple(rows), offset=offset, size=nbytes)
            offset += nbytes
        found[b"emb"] = hostile.replace(full, shape=shape, slices=tuple(Slice(e) for e in extents))
    return edit


@pytest.mark.parametrize("extents, match", [
    ([((0, 4), (0, -1)), ((4, 3), (0, -1))], r"do not tile its shape \[10, 4\]"),                     # a gap
    ([((0, 4), (0, -1)), ((3, 3), (0, -1)), ((6, 4), (0, -1))], r"do not tile"),                     # overlap + gap
    ([((0, 5), (0, -1)), ((3, 2), (0, -1)), ((7, 3), (0, -1))], r"do not tile"),                     # same volume, overlapping
    ([((0, 4), (0, -1)), ((4, 3), (0, -1)), ((7, 4), (0, -1))], r"lies outside its shape"),          # past the end
    ([((0, 10), (0, 2)), ((0, 10), (1, 2))], r"do not tile"),                                        # overlap on axis 1
])
def test_partitioned_slices_must_tile_the_shape_exactly(partitioned, tmp_path, extents, match):
    d = damaged(partitioned, tmp_path, _reslice(extents))
    with pytest.raises(CorruptCheckpointError, match=match):
        warmstart.read_table(d)
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match=match):
        warmstart.transfer(d, partitioned["prefix"], out)
    assert not out.exists()


def test_slices_that_tile_in_another_layout_are_read_exactly(partitioned, tmp_path):
    """The check accepts any exact tiling (here 2 x 2 blocks), and the value is assembled right."""
    layout = [((0, 5), (0, 2)), ((0, 5), (2, 2)), ((5, 5), (0, 2)), ((5, 5), (2, 2))]
    d = damaged(partitioned, tmp_path, _reslice(layout))
    data = next(d.glob("*.data-*"))
    emb = partitioned["values"]["emb"]
    blob = b"".join(np.ascontiguousarray(emb[r:r + 5, c:c + 2]).tobytes() for (r, _), (c, _) in layout)
    # Put the blocks' bytes where the re-sliced index says they are, with their CRCs.
    from warmstart.formats.bundle import checksums

    def fix(found):
        for extent in layout:
            key = slice_key("emb", extent)
            (r, _), (c, _) = extent
            part = np.ascontiguousarray(emb[r:r + 5, c:c + 2]).tobytes()
            found[key] = hostile.replace(found[key], crc32c=checksums.mask(checksums.crc32c(part)))
    hostile.edit_entries(d, fix)
    data.write_bytes(blob)
    np.testing.assert_array_equal(warmstart.formats.bundle.BundleReader(str(d)).read("emb"), emb)


def test_a_tiny_checkpoint_declaring_a_huge_partitioned_tensor_publishes_nothing(partitioned, tmp_path):
    """[2**26, 4] float32 is 1 GiB: slices that claim it must be in the data file, which holds 200 bytes."""
    d = damaged(partitioned, tmp_path, _reslice([((0, 1 << 25), (0, -1)), ((1 << 25, 1 << 25), (0, -1))],
                                                 shape=(1 << 26, 4)))
    out = tmp_path / "out"
    with pytest.raises(CorruptCheckpointError, match=r"needs bytes .* but the file has \d+ bytes"):
        warmstart.transfer(d, d, out)
    assert not out.exists()


def test_a_signature_with_a_negative_dimension_is_refused(tmp_path):
    import json

    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps({"format": "warmstart.signature", "variables": [
        {"name": "a", "dtype": "float32", "shape": [4, -5]}]}))
    with pytest.raises(CorruptCheckpointError, match=r"'a' has a negative dimension \[4, -5\]"):
        warmstart.signature_of(sig)
