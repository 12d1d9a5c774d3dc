"""A line index over a growing log file: offsets in a compact array, lines read with pread.

The index never holds file contents. It keeps one unsigned 64-bit start offset per
display line, so a log of any size costs about 8 bytes per line, and it reads only
the lines that are asked for.

A 1 GB log must show its last screen at once, long before a forward scan could
reach the end. So opening a file splits it at a line start `T` near EOF, found by
reading a little backwards: the *tail* `[T, EOF)` is indexed right away and grows
with `refresh()` as the file is appended to; the *head* `[0, T)` is scanned by
`scan_head()` in a background thread and then spliced in front of the tail by
`merge_head()`, which shifts every line number by the head's line count. The
owner calls `merge_head()` when it is ready to renumber (a UI calls it on its own
thread so its scroll position and the numbering change together).

A display line is a line of the file, or a piece of one: a line longer than
`max_line_bytes` is cut into pieces of at most that many bytes (never inside a
UTF-8 sequence), so a 10 MB line without a newline costs a few hundred offsets,
not a 10 MB string.

Thread safety: one thread may run `scan_head()` while another runs `refresh()` and
a third (the reader) calls `read_lines()`; shared state changes under one lock.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

from qqtui.core.line_offsets import OffsetTable, split_block

DEFAULT_MAX_LINE_BYTES = 64 * 1024
# Chunked reads: big enough that the per-read cost vanishes, small enough that the
# transient list of split lines stays a few MB.
_READ_BYTES = 1024 * 1024
_FIND_READ_BYTES = 4 * 1024 * 1024
# How far back from EOF the tail-first open may read looking for line starts.
_TAIL_SCAN_MAX_BYTES = 4 * 1024 * 1024
_TAIL_SCAN_BLOCK = 64 * 1024
# Bytes before the indexed end remembered to notice a file truncated and rewritten
# past its old size between two refreshes.
_GUARD_BYTES = 16

StopCheck = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one `refresh()` changed."""

    line_count: int
    """Display lines addressable after the refresh."""
    appended: int
    """Lines added at the end (0 after a reset)."""
    reset: bool
    """The file was truncated, replaced or (re)appeared: all line numbers changed."""
    more: bool
    """The byte budget ran out before the end of the file; call again."""


class LogIndex:
    """Line index over one (possibly growing) log file.

    Line numbers are display lines (see module docstring) counted from 0. Until
    `merge_head()` has run after `scan_head()`, they count from the tail start.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        tail_scan_bytes: int = _TAIL_SCAN_MAX_BYTES,
        tail_lines: int = 2000,
    ) -> None:
        if max_line_bytes < 4:
            raise ValueError("max_line_bytes must be at least 4")
        self.path = os.fspath(path)
        self.max_line_bytes = max_line_bytes
        self._tail_scan_bytes = tail_scan_bytes
        self._tail_lines = tail_lines
        self._lock = threading.Lock()  # guards the published state below
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino)
        self._generation = 0
        self._lines = OffsetTable()  # starts of display lines from `_base`
        self._base = 0  # byte offset where `_lines` begins (T until the merge)
        self._size = 0  # bytes indexed; `_lines.last()` is the open line's start
        self._guard = b""
        self._head: OffsetTable | None = None  # finished head scan awaiting merge
        self._head_generation = -1
        self._closed = False

    # -- published state -------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Display lines that can be read now."""
        with self._lock:
            return self._line_count_locked()

    def _line_count_locked(self) -> int:
        n = len(self._lines)
        if n and self._lines.last() >= self._size:
            n -= 1  # the line after a final newline is empty, not a line yet
        return n

    @property
    def indexed_bytes(self) -> int:
        """File size the index covers."""
        return self._size

    @property
    def head_pending(self) -> bool:
        """True while lines before the tail start are not yet numbered."""
        return self._base > 0

    @property
    def head_ready(self) -> bool:
        """True when `merge_head()` would renumber."""
        with self._lock:
            return self._head is not None and self._head_generation == self._generation

    @property
    def generation(self) -> int:
        """Changes whenever line numbers are reassigned from scratch (reset)."""
        return self._generation

    @property
    def index_nbytes(self) -> int:
        """Memory held by the offset arrays."""
        with self._lock:
            total = self._lines.nbytes
            if self._head is not None:
                total += self._head.nbytes
            return total

    # -- opening and growth ----------------------------------------------------

    def refresh(self, budget_bytes: int | None = None) -> RefreshResult:
        """Index bytes appended since the last call; re-index a truncated or replaced file.

        Reads at most `budget_bytes` new bytes (all if None) so a caller can report
        progress on a file that grew by gigabytes. Safe to call from any one thread
        at a time while another runs `scan_head()`.
        """
        try:
            with self._refresh_lock:
                return self._refresh_locked(budget_bytes)
        finally:
            if self._closed:
                self._release_fd()

    def _refresh_locked(self, budget_bytes: int | None) -> RefreshResult:
        if self._closed:
            return RefreshResult(0, 0, False, False)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        reset = False
        if st is None or not stat.S_ISREG(st.st_mode):
            if self._fd is not None or self._size:
                self._reset_to_empty()
                reset = True
            return RefreshResult(self.line_count, 0, reset, False)
        replaced = self._fd is None or self._identity != (st.st_dev, st.st_ino)
        if replaced or st.st_size < self._size or not self._guard_intact():
            self._open()
            reset = True
        before = self.line_count
        more = self._extend_tail(st.st_size, budget_bytes)
        after = self.line_count
        return RefreshResult(after, 0 if reset else after - before, reset, more)

    def close(self) -> None:
        """Stop any head scan and release the file; never waits for a running refresh."""
        with self._lock:
            self._closed = True
            self._generation += 1
        self._release_fd()

    def _release_fd(self) -> None:
        # A refresh in another thread may be reading through the descriptor: then
        # it is closed by that refresh on its way out (it checks `_closed` after
        # releasing the lock), so a UI thread closing the index never blocks.
        if not self._refresh_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._refresh_lock.release()

    def __enter__(self) -> LogIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reset_to_empty(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
            self._identity = None
            self._generation += 1
            self._lines = OffsetTable()
            self._lines.extend((0,))
            self._base = 0
            self._size = 0
            self._guard = b""
            self._head = None

    def _open(self) -> None:
        """(Re)open the file and choose the tail start near EOF."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            size = st.st_size
            tail_start = self._find_tail_start(fd, size)
        except BaseException:
            os.close(fd)
            raise
        lines = OffsetTable()
        lines.extend((tail_start,))
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = fd
            self._identity = (st.st_dev, st.st_ino)
            self._generation += 1
            self._lines = lines
            self._base = tail_start
            self._size = tail_start
            self._guard = b""
            self._head = None

    def _find_tail_start(self, fd: int, size: int) -> int:
        """A line start near EOF with enough lines after it to fill a screen or more."""
        pos = size
        newlines: list[int] = []  # positions of '\n', from the end backwards
        # The final byte being a newline ends the last line; it starts no new one.
        limit = size - 1
        while pos > 0 and size - pos < self._tail_scan_bytes:
            start = max(0, pos - _TAIL_SCAN_BLOCK)
            block = os.pread(fd, pos - start, start)
            if not block:
                break
            end = len(block)
            while True:
                hit = block.rfind(b"\n", 0, end)
                if hit < 0:
                    break
                if start + hit < limit:
                    newlines.append(start + hit)
                    if len(newlines) > self._tail_lines:
                        return start + hit + 1
                end = hit
            pos = start
        if pos == 0:
            return 0  # the whole file is small: index it all as the tail
        if newlines:
            return newlines[-1] + 1
        # No newline in the last few MB: no line start is known near EOF, so the
        # tail is the whole file and refresh() indexes it front to back.
        return 0

    def _guard_intact(self) -> bool:
        """The bytes just before the indexed end are unchanged (no rewrite)."""
        if not self._guard or self._fd is None:
            return True
        at = self._size - len(self._guard)
        return os.pread(self._fd, len(self._guard), at) == self._guard

    def _extend_tail(self, size: int, budget: int | None) -> bool:
        fd = self._fd
        assert fd is not None
        end = size if budget is None else min(size, self._size + budget)
        generation = self._generation
        pos = self._size
        line_start = self._lines.last()
        while pos < end:
            block = os.pread(fd, min(_READ_BYTES, end - pos), pos)
            if not block:
                break
            before = self._guard[-3:]
            starts, line_start = split_block(block, pos, line_start, self.max_line_bytes, before)
            pos += len(block)
            with self._lock:
                if self._generation != generation:
                    return False
                self._lines.extend(starts)
                self._size = pos
                self._guard = (self._guard + block[-_GUARD_BYTES:])[-_GUARD_BYTES:]
        return pos < size

    # -- head scan ---------------------------------------------------------------

    def scan_head(self, should_stop: StopCheck | None = None) -> bool:
        """Index `[0, tail start)`; blocking, meant for a background thread.

        Returns True when a finished head is waiting for `merge_head()`, False if
        there was nothing to scan, the scan was stopped, or the file was reset.
        """
        with self._lock:
            if self._fd is None or self._base == 0:
                return False
            # A private descriptor: a reset may close the shared one at any time,
            # and its number could be reused by an unrelated file.
            fd = os.dup(self._fd)
            base, generation = self._base, self._generation
        try:
            return self._scan_head(fd, base, generation, should_stop)
        finally:
            os.close(fd)

    def _scan_head(
        self, fd: int, base: int, generation: int, should_stop: StopCheck | None
    ) -> bool:
        head = OffsetTable()
        head.extend((0,))
        pos = 0
        line_start = 0
        before = b""
        while pos < base:
            if (should_stop is not None and should_stop()) or self._generation != generation:
                return False
            block = os.pread(fd, min(_READ_BYTES, base - pos), pos)
            if not block:
                return False  # truncated while scanning; refresh() will reset
            starts, line_start = split_block(block, pos, line_start, self.max_line_bytes, before)
            head.extend(starts)
            pos += len(block)
            before = (before + block[-3:])[-3:]
        # The head ends with a newline at base-1, so its last start is `base`,
        # which is also the tail's first: keep one.
        if len(head) and head.last() == base:
            head.drop_last()
        with self._lock:
            if self._generation != generation:
                return False
            self._head = head
            self._head_generation = generation
        return True

    def merge_head(self) -> int:
        """Splice a finished head scan in front of the tail; returns lines prepended."""
        with self._lock:
            head = self._head
            if head is None or self._head_generation != self._generation:
                return 0
            self._head = None
            prepended = len(head)
            head.concat(self._lines)
            self._lines = head
            self._base = 0
            return prepended

    # -- reading -------------------------------------------------------------------

    def read_lines(self, start: int, count: int) -> list[str]:
        """Decoded display lines `[start, start + count)`, clamped to `line_count`.

        One `pread` covers the whole range; trailing newline and carriage return
        are removed; invalid UTF-8 becomes U+FFFD.
        """
        return [raw.decode("utf-8", errors="replace") for raw in self.read_raw_lines(start, count)]

    def read_raw_lines(self, start: int, count: int) -> list[bytes]:
        """Like `read_lines` but undecoded."""
        with self._lock:
            n = self._line_count_locked()
            start = max(0, start)
            stop = min(n, start + max(0, count))
            if start >= stop or self._fd is None:
                return []
            offsets = self._lines.slice(start, stop + 1)
            if len(offsets) == stop - start:
                offsets.append(self._size)
            fd = self._fd
            first = offsets[0]
            data_len = offsets[-1] - first
            # The read happens under the lock so a concurrent reset cannot close
            # or swap the descriptor mid-read; it is bounded by count * cap.
            data = os.pread(fd, data_len, first)
        out: list[bytes] = []
        for begin, end in pairwise(offsets):
            raw = data[begin - first : end - first]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
            out.append(raw)
        return out

    def find(
        self,
        query: str,
        start: int = 0,
        *,
        after: int = -1,
        should_stop: StopCheck | None = None,
    ) -> Iterator[tuple[int, list[int]]]:
        """Scan the indexed bytes from `start` for `query` (ASCII case-insensitive).

        Yields `(scanned_upto, keys)` after each block read. A key is the offset
        where a matching line starts, or the match's own offset while its line is
        in the head that has no number yet; `line_at_offset` maps either to its
        line. One key per line, ascending; `after` is the last key of an earlier
        scan that this one continues. Raw bytes are matched so a 1 GB scan runs at
        C speed; a match inside an escape sequence counts too.
        """
        needle = query.encode("utf-8")
        if not needle:
            return
        pattern = re.compile(re.escape(needle), re.IGNORECASE)
        with self._lock:
            if self._fd is None:
                return
            fd = os.dup(self._fd)  # private: a reset may close the shared one
            end, generation = self._size, self._generation
        try:
            pos = start
            while pos < end:
                if (should_stop is not None and should_stop()) or self._generation != generation:
                    return
                # Blocks overlap so a match across a border is seen; one that ended
                # before `pos` was already seen in the previous block.
                read_from = max(start, pos - (len(needle) - 1))
                block = os.pread(fd, min(_FIND_READ_BYTES, end - read_from), read_from)
                if not block:
                    return
                keys: list[int] = []
                for found in pattern.finditer(block):
                    if read_from + found.end() <= pos:
                        continue
                    offset = read_from + found.start()
                    line = self.line_at_offset(offset)
                    line_start = self.offset_of_line(line) if line is not None else None
                    key = line_start if line_start is not None else offset
                    if key > after:
                        keys.append(key)
                        after = key
                pos = read_from + len(block)
                yield pos, keys
        finally:
            os.close(fd)

    def line_at_offset(self, offset: int) -> int | None:
        """Display line containing byte `offset`, or None if not numbered yet."""
        with self._lock:
            if offset < self._base or offset >= self._size:
                return None
            index = self._lines.index_at_or_before(offset)
            return index if index >= 0 else None

    def offset_of_line(self, line: int) -> int | None:
        """Byte offset where display line `line` starts, or None if out of range."""
        with self._lock:
            if not 0 <= line < self._line_count_locked():
                return None
            return self._lines[line]
