"""Following a run's output as it grows: new bytes of its log file, or of the tail its
worker keeps in the database when the log is on another host, until the run ends.

Generators of raw chunks: the caller decides what reaches a terminal (`qqtui logs`
sanitises for a tty and writes bytes as they are to a pipe), and stops early by
closing the generator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from qqtui.core.records import OutputTail

# How often a followed log file is read again, and how often the run's status is asked
# (a database read) to learn it ended.
FILE_POLL_S = 0.1
STATUS_POLL_S = 0.5
# Workers store a run's tail at most once a second; asking more often finds nothing new.
STORED_TAIL_POLL_S = 1.0
READ_SIZE = 1 << 20
# With whole_lines, a partial last line is held back for its newline, but no longer
# than this: a line that never ends must still be shown.
MAX_HELD_LINE = 4096


def tail_offset(path: str, lines: int) -> int:
    """Byte offset where the last `lines` lines start, reading backwards in blocks."""
    size = os.path.getsize(path)
    if lines <= 0:
        return size
    block = 65536
    seen = 0
    pos = size
    with open(path, "rb") as fh:
        # A trailing newline ends the last line; it does not start a new one.
        fh.seek(max(0, size - 1))
        if size and fh.read(1) == b"\n":
            pos -= 1
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            idx = len(chunk)
            while True:
                idx = chunk.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                seen += 1
                if seen == lines:
                    return start + idx + 1
            pos = start
    return 0


def last_lines(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of `data` (all of it when None)."""
    if lines is None:
        return data
    cut = len(data)
    for _ in range(lines + (1 if data.endswith(b"\n") else 0)):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            break
    return data[cut + 1 :] if cut >= 0 else data


def follow_file(
    path: str,
    *,
    offset: int,
    follow: bool,
    run_ended: Callable[[], bool],
    whole_lines: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes]:
    """The log's bytes from `offset` on; with `follow`, new ones as they come, until
    `run_ended()` says the run is over (then one more read picks up its last bytes).

    A log not created yet reads as empty. With `whole_lines` each chunk ends at a line
    break where one is near, so a caller decoding chunks never splits a UTF-8 sequence
    or an escape sequence; what is held back comes last.
    """
    pending = b""
    last_check = 0.0
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                while chunk := fh.read(READ_SIZE):
                    offset += len(chunk)
                    data = pending + chunk
                    cut = len(data)
                    if whole_lines:
                        nl = data.rfind(b"\n")
                        cut = nl + 1 if nl >= 0 and len(data) - nl < MAX_HELD_LINE else len(data)
                    yield data[:cut]
                    pending = data[cut:]
        except FileNotFoundError:
            pass
        if not follow:
            break
        now = clock()
        if now - last_check > STATUS_POLL_S:
            last_check = now
            if run_ended():
                follow = False  # one more read picks up the final bytes
                continue
        sleep(FILE_POLL_S)
    if pending:
        yield pending


def follow_stored_tail(
    first: OutputTail,
    *,
    lines: int | None,
    follow: bool,
    read_tail: Callable[[], OutputTail | None],
    run_ended: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """The stored tail `first` (its last `lines` lines); with `follow`, what each newer
    stored tail adds, until the run is over. Bytes that scrolled out of the stored
    window between two reads are said in a marker line instead."""
    yield last_lines(first.tail, lines)
    shown = first.size
    while follow:
        # Asked before the wait, so the tail read after it holds the run's last bytes.
        ended = run_ended()
        sleep(STORED_TAIL_POLL_S)
        newer = read_tail()
        if newer is not None and newer.size > shown:
            fresh = newer.size - shown
            if fresh > len(newer.tail):
                yield f"\n[qqtui: {fresh - len(newer.tail):,} bytes not shown]\n".encode()
            yield newer.tail[-min(fresh, len(newer.tail)) :]
            shown = newer.size
        follow = not ended
