"""Range planning (merging neighbours, splitting large tensors) and bounded read-ahead."""

from __future__ import annotations

import threading
import time

import pytest

from warmstart.storage import fetch_blocks, plan_blocks


def test_neighbours_merge_within_gap_and_block_size():
    blocks = plan_blocks([("a", 0, 0, 100), ("b", 0, 100, 100), ("c", 0, 210, 100), ("d", 0, 400, 100),
                          ("e", 0, 5000, 10)], max_block=1000, max_gap=64)
    # c: a 10-byte gap (3% of the block) is read; d: 90 bytes > max_gap; e: far away.
    assert [(b.start, b.end) for b in blocks] == [(0, 310), (400, 500), (5000, 5010)]
    assert [(p.tag, p.start, p.size) for p in blocks[0].pieces] == [("a", 0, 100), ("b", 100, 100), ("c", 210, 100)]


def test_blocks_never_exceed_max_block_and_large_tensors_are_split():
    blocks = plan_blocks([("small", 0, 0, 10), ("big", 0, 10, 2500), ("after", 0, 2510, 10)],
                         max_block=1000, max_gap=64)
    assert all(b.size <= 1000 for b in blocks)
    big = [p for b in blocks for p in b.pieces if p.tag == "big"]
    assert [p.size for p in big] == [1000, 1000, 500]
    assert [(p.first, p.last) for p in big] == [(True, False), (False, False), (False, True)]


def test_shards_are_never_merged_and_order_is_by_shard_then_offset():
    blocks = plan_blocks([("x", 1, 0, 10), ("y", 0, 10, 10), ("z", 0, 0, 10)], max_block=100, max_gap=100)
    assert [(b.shard, [p.tag for p in b.pieces]) for b in blocks] == [(0, ["z", "y"]), (1, ["x"])]


def test_fetch_yields_in_order_with_bounded_reads_in_flight():
    blocks = plan_blocks([(i, 0, i * 100, 100) for i in range(20)], max_block=100, max_gap=0)
    active, peak, lock = 0, 0, threading.Lock()

    def read(block):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return bytes([block.start // 100]) * block.size
        finally:
            with lock:
                active -= 1

    got = [data[0] for _, data in fetch_blocks(blocks, read, in_flight=3)]
    assert got == list(range(20))
    assert peak <= 3


def _tracking_reader(sizes_in_flight: list[int]):
    """A read() that records the bytes outstanding each time one starts; it waits a little so that
    reads really overlap."""
    active, lock = [], threading.Lock()

    def read(block):
        with lock:
            active.append(block.size)
            sizes_in_flight.append(sum(active))
        time.sleep(0.002)
        with lock:
            active.remove(block.size)
        return b"\0" * block.size

    return read


def test_fetch_reads_many_small_blocks_at_once_within_a_byte_budget():
    # 200 small blocks and 4 large ones: small ones go 32 at a time, large ones one by one, and the
    # bytes outstanding never exceed the budget (one read always goes, even a larger one).
    requests = [(i, 0, i * 10_000, 100) for i in range(200)] + [(1000 + i, 1, i * 1000, 1000) for i in range(4)]
    blocks = plan_blocks(requests, max_block=1000, max_gap=0)
    seen: list[int] = []
    got = list(fetch_blocks(blocks, _tracking_reader(seen), in_flight=32, max_bytes=1000))
    assert [b.start for b, _ in got] == [b.start for b in blocks]
    assert max(seen) <= 1000
    assert max(seen) >= 500  # several small reads were outstanding together


def test_fetch_raises_the_first_read_error():
    blocks = plan_blocks([(i, 0, i * 10, 10) for i in range(5)], max_block=10, max_gap=0)

    def read(block):
        if block.start == 20:
            raise OSError("boom")
        return b"x" * block.size

    with pytest.raises(OSError, match="boom"):
        list(fetch_blocks(blocks, read, in_flight=2))


def test_sparse_selections_are_not_merged_into_reading_unselected_bytes():
    # 10% of adjacent 256-byte tensors: each gap (2304 B) is 9x the tensor, far over the waste budget.
    blocks = plan_blocks([(i, 0, i * 2560, 256) for i in range(20)], max_block=1 << 20, max_gap=4096)
    assert len(blocks) == 20 and sum(b.size for b in blocks) == 20 * 256
