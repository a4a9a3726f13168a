"""Damaged and hostile checkpoints made from real TF-written ones: the index re-encoded with edits.

A test takes a checkpoint TensorFlow wrote, changes what an attacker or a broken writer could
change (an entry's shape, size, offset, slices; raw bytes of the index), and checks that warmstart
refuses it with a typed error and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from warmstart.formats.bundle._protos import BundleEntry, decode_entry, encode_entry
from warmstart.formats.bundle._sstable import TableWriter, read_table

__all__ = ["copy_checkpoint", "edit_entries", "entries", "replace", "raw_index", "write_raw_index", "tree_digest",
           "fuzz_directory"]


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
