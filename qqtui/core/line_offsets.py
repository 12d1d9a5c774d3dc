"""Where the lines of a log start: a compact table of their byte offsets, and the
splitting of a block of the file into line starts (long lines cut into pieces, never
inside a UTF-8 sequence). LogIndex (logindex.py) builds its index from these."""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterable
from itertools import accumulate, count
from operator import add

# Offsets live in fixed-size arrays so growth never copies the whole index and the
# only over-allocation is in the last, still-growing chunk.
_CHUNK_ITEMS = 64 * 1024


class OffsetTable:
    """Append-only sequence of uint64 offsets stored in fixed-size array chunks."""

    __slots__ = ("_chunks", "_firsts", "_len")

    def __init__(self) -> None:
        self._chunks: list[array[int]] = []
        self._firsts: list[int] = []  # global index of each chunk's first item
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> int:
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        chunk = bisect.bisect_right(self._firsts, index) - 1
        return self._chunks[chunk][index - self._firsts[chunk]]

    def last(self) -> int:
        return self._chunks[-1][-1]

    def extend(self, values: Iterable[int]) -> None:
        """Append offsets; `values` must be ascending and above the current last."""
        pending = values if isinstance(values, array) else array("Q", values)
        start = 0
        while start < len(pending):
            if not self._chunks or len(self._chunks[-1]) >= _CHUNK_ITEMS:
                if self._chunks:
                    # Freeze the full chunk into an exactly sized copy: array growth
                    # over-allocates by 1/16, which would eat the 8.5 bytes/line budget.
                    self._chunks[-1] = array("Q", self._chunks[-1])
                self._chunks.append(array("Q"))
                self._firsts.append(self._len)
            tail = self._chunks[-1]
            take = min(_CHUNK_ITEMS - len(tail), len(pending) - start)
            tail.extend(pending[start : start + take])
            start += take
            self._len += take

    def concat(self, other: OffsetTable) -> None:
        """Append every offset of `other` by adopting its chunks (no copy)."""
        for chunk in other._chunks:
            self._chunks.append(chunk)
            self._firsts.append(self._len)
            self._len += len(chunk)

    def drop_last(self) -> None:
        """Remove the last offset."""
        chunk = self._chunks[-1]
        chunk.pop()
        self._len -= 1
        if not chunk:
            self._chunks.pop()
            self._firsts.pop()

    def slice(self, start: int, stop: int) -> list[int]:
        """Offsets `[start, stop)` as a list, clamped to the table."""
        stop = min(stop, self._len)
        out: list[int] = []
        index = max(start, 0)
        while index < stop:
            chunk = bisect.bisect_right(self._firsts, index) - 1
            first = self._firsts[chunk]
            data = self._chunks[chunk]
            end = min(stop - first, len(data))
            out.extend(data[index - first : end])
            index = first + end
        return out

    def index_at_or_before(self, offset: int) -> int:
        """Index of the last offset <= `offset` (-1 if none)."""
        if not self._len:
            return -1
        lo, hi = 0, len(self._chunks)
        # Binary search over chunks by their first value, then inside the chunk.
        while lo < hi:
            mid = (lo + hi) // 2
            if self._chunks[mid][0] <= offset:
                lo = mid + 1
            else:
                hi = mid
        chunk = lo - 1
        if chunk < 0:
            return -1
        return self._firsts[chunk] + bisect.bisect_right(self._chunks[chunk], offset) - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the offsets, including array and list overhead."""
        total = sys.getsizeof(self._chunks) + sys.getsizeof(self._firsts)
        total += sum(sys.getsizeof(chunk) for chunk in self._chunks)
        return total + sum(sys.getsizeof(first) for first in self._firsts)


def split_block(
    block: bytes, pos: int, line_start: int, cap: int, before: bytes = b""
) -> tuple[array[int], int]:
    """Line starts inside `block` (file offset `pos`) and the start of the open line.

    `line_start` is where the line that runs into this block started; the caller
    guarantees `pos - line_start <= cap` (pieces are cut eagerly), so every cut
    this function makes falls inside `block`. `before` holds the bytes just before
    `block` (up to 3), so a cut lands on the same character boundary however the
    file happened to be read in blocks.
    """
    parts = block.split(b"\n")
    carried = pos - line_start
    if carried + len(parts[0]) <= cap and max(map(len, parts)) <= cap:
        # Fast path, all in C: start of line i+1 = pos + sum(len(part[0..i])) + (i + 1).
        starts = array("Q", map(add, accumulate(map(len, parts[:-1])), count(pos + 1)))
        return starts, (starts[-1] if starts else line_start)
    starts = array("Q")
    part_start = pos
    last = len(parts) - 1
    for i, part in enumerate(parts):
        part_end = part_start + len(part)
        while part_end - line_start > cap:
            cut = utf8_cut(before + block, pos - len(before), line_start + cap, line_start)
            starts.append(cut)
            line_start = cut
        if i < last:
            line_start = part_end + 1
            starts.append(line_start)
        part_start = part_end + 1
    return starts, line_start


def utf8_cut(data: bytes, pos: int, cut: int, line_start: int) -> int:
    """Move a cut back (at most 3 bytes) so it does not split a UTF-8 sequence.

    `data` holds the file bytes from offset `pos`.
    """
    for candidate in range(cut, max(cut - 3, line_start + 1, pos) - 1, -1):
        if not 0x80 <= data[candidate - pos] <= 0xBF:
            return candidate
    return cut
