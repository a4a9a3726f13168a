"""Reading many tensors' byte ranges with few requests and bounded memory.

:func:`plan_blocks` turns (tensor, shard, offset, size) requests into read blocks: neighbours
closer than ``max_gap`` are merged while a block stays within ``max_block`` bytes, and a tensor
larger than ``max_block`` is split into several blocks. :func:`fetch_blocks` reads the blocks
with at most ``in_flight`` requests outstanding and yields them in order, so reading overlaps
with whatever the caller does with the previous block. Memory: about
``(in_flight + 1) * max_block`` bytes, whatever the size of the model or of its largest tensor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["Piece", "Block", "plan_blocks", "fetch_blocks"]


@dataclass(frozen=True, slots=True)
class Piece:
    """``size`` bytes of tensor ``tag`` at ``start`` within its block; ``first`` begins that tensor,
    ``last`` ends it (a tensor split over several blocks has several pieces)."""

    tag: Hashable
    start: int
    size: int
    first: bool
    last: bool


@dataclass(frozen=True, slots=True)
class Block:
    shard: int
    start: int
    end: int
    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_blocks(requests: Iterable[tuple[Hashable, int, int, int]], max_block: int, max_gap: int,
                max_waste: float = 0.05) -> list[Block]:
    """Blocks covering every (tag, shard, offset, size) request, in (shard, offset) order.

    A gap between neighbours is read (to save a request) only when it is at most ``max_gap``
    bytes and the block's unrequested bytes stay within ``max_waste`` of its requested bytes,
    so a sparse selection costs requests, never a multiple of its bytes.
    """
    blocks: list[Block] = []
    current: list[tuple[Hashable, int, int]] = []  # (tag, offset, size) of the open block
    shard_of_current = -1
    useful = waste = 0

    block_end = 0  # end of the open block, kept as we go (recomputing it is quadratic in its pieces)

    def flush() -> None:
        if current:
            start = current[0][1]
            pieces = tuple(Piece(tag, off - start, size, True, True) for tag, off, size in current)
            blocks.append(Block(shard_of_current, start, block_end, pieces))
            current.clear()

    for tag, shard, offset, size in sorted(requests, key=lambda r: (r[1], r[2])):
        if size > max_block:
            flush()
            for part_start in range(0, size, max_block):
                part = min(max_block, size - part_start)
                piece = Piece(tag, 0, part, part_start == 0, part_start + part == size)
                blocks.append(Block(shard, offset + part_start, offset + part_start + part, (piece,)))
            continue
        gap = 0
        if current:
            block_start = current[0][1]
            gap = max(0, offset - block_end)
            fits = (shard == shard_of_current and gap <= max_gap and waste + gap <= max_waste * (useful + size)
                    and offset + size - block_start <= max_block)
            if not fits:
                flush()
                gap = 0
        if not current:
            useful = waste = 0
            block_end = 0
        shard_of_current = shard
        block_end = max(block_end, offset + size)
        current.append((tag, offset, size))
        useful += size
        waste += gap
    flush()
    return blocks


def fetch_blocks(blocks: list[Block], read: Callable[[Block], bytes], in_flight: int = 4) -> Iterator[tuple[Block, bytes]]:
    """Yield (block, its bytes) in order, reading up to ``in_flight`` blocks ahead on worker threads.

    ``read`` must return exactly ``block.size`` bytes or raise; the first error is raised here
    and the remaining reads are cancelled.
    """
    if not blocks:
        return
    with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="warmstart-read") as pool:
        pending: deque[tuple[Block, Future[bytes]]] = deque()
        upcoming = iter(blocks)
        try:
            for block in upcoming:
                pending.append((block, pool.submit(read, block)))
                if len(pending) >= in_flight:
                    break
            while pending:
                block, future = pending.popleft()
                data = future.result()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(read, nxt)))
                yield block, data
        finally:
            for _, future in pending:
                future.cancel()
