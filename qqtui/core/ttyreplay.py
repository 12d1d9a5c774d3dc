"""What redraws a terminal's current screen without replaying its whole history.

A terminal emulator replays a few MB a second, and a tty run's log may hold 64 MiB:
replaying it all to show one screen would take a minute. But a screen only depends
on what was written since it was last cleared, plus a few modes. ScreenReplay keeps
exactly that, bounded: the bytes since the last clear (ED 2, RIS) or switch of
screen (the alternate screen, modes 1049/1047/47, whose exit brings back the main
screen as it was), and the DEC private modes that change how keys and the cursor
behave (application cursor keys, bracketed paste, mouse reporting, cursor shown).

It only looks for these sequences; it does not emulate. Stdlib only: the run's shim
keeps one per tty run, and viewers build one from the tail of the log.
"""

from __future__ import annotations

import os
import re

REPLAY_CAP = 256 * 1024
"""At most this many bytes replay a screen (about 0.1 s in pyte): a run that never
clears its screen is replayed from its last REPLAY_CAP bytes, cut at a line start."""
LOG_WINDOW = 4 * 1024 * 1024
"""How far back from a log's end `replay_log_tail` looks for the last clear."""

# ED 2 (clear screen), RIS (full reset), the alternate screen's enter (h) and exit (l).
_SCREEN_EVENT = re.compile(rb"\x1b\[2J|\x1bc|\x1b\[\?(?:1049|1047|47)[hl]")
_PRIVATE_MODE = re.compile(rb"\x1b\[\?([0-9;]{1,32})([hl])")
# Modes a redraw needs: DECCKM (1), DECAWM (7), cursor shown (25), mouse reporting and
# its encodings (1000-1006, 1015), focus events (1004), bracketed paste (2004).
TRACKED_MODES = frozenset({1, 7, 25, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004})
# How every sequence of the two above starts.
_ANY_EVENT = re.compile(rb"\x1b(?:\[2J|c|\[\?)")
# The longest sequence searched for, minus one: what may straddle two feeds.
_OVERLAP = 40


class ScreenReplay:
    """Fed a terminal's output, answers the bytes that redraw its current screen."""

    def __init__(self, cap: int = REPLAY_CAP) -> None:
        self.cap = cap
        self._screen = bytearray()  # since the current screen was last cleared
        self._main: bytes | None = None  # the main screen's bytes while on the alternate one
        self.alternate = False
        self.modes: dict[int, bool] = {}

    def feed(self, data: bytes) -> None:
        if not data:
            return
        scan_from = max(0, len(self._screen) - _OVERLAP)
        self._screen += data
        # Plain text (no ESC: a memchr) and output whose only escapes are colours (one
        # regex search, where the two finditers below cost twice that) change nothing.
        if (
            self._screen.find(b"\x1b", scan_from) == -1
            or _ANY_EVENT.search(self._screen, scan_from) is None
        ):
            self._trim()
            return
        prefix: bytes | None = None  # replaces _screen[:keep_from] when set
        keep_from = 0
        for match in _SCREEN_EVENT.finditer(self._screen, scan_from):
            token = match.group()
            start = match.start()
            if token == b"\x1bc":
                self.alternate, self._main, self.modes = False, None, {}
                prefix, keep_from = b"", start
            elif token == b"\x1b[2J":
                prefix, keep_from = b"", start
            elif token.endswith(b"h"):
                if not self.alternate:
                    before = bytes(self._screen[keep_from:start])
                    self._main = (prefix if prefix is not None else b"") + before
                    self.alternate = True
                prefix, keep_from = b"", start
            elif self.alternate:
                # Leaving the alternate screen brings the main one back as it was.
                prefix, keep_from = self._main or b"", match.end()
                self.alternate, self._main = False, None
        for match in _PRIVATE_MODE.finditer(self._screen, scan_from):
            on = match.group(2) == b"h"
            for part in match.group(1).split(b";"):
                if part.isdigit() and int(part) in TRACKED_MODES:
                    self.modes[int(part)] = on
        if prefix is not None:
            self._screen = bytearray(prefix) + self._screen[keep_from:]
        self._trim()

    def replay(self) -> bytes:
        """Bytes that draw the current screen on a blank terminal of the same size."""
        modes = b"".join(
            b"\x1b[?%d%s" % (mode, b"h" if on else b"l") for mode, on in sorted(self.modes.items())
        )
        if self.alternate:
            return (self._main or b"") + b"\x1b[?1049h" + modes + bytes(self._screen)
        return modes + bytes(self._screen)

    def _trim(self) -> None:
        if len(self._screen) > self.cap:
            self._screen = bytearray(_tail_from_line_start(bytes(self._screen), self.cap // 2))
        if self._main is not None and len(self._main) > self.cap:
            self._main = _tail_from_line_start(self._main, self.cap // 2)


def _tail_from_line_start(data: bytes, size: int) -> bytes:
    """The last `size` bytes or fewer, starting after a newline so that no escape
    sequence is cut in two (a line with no newline in reach is cut where it falls)."""
    cut = len(data) - size
    newline = data.find(b"\n", cut)
    return data[newline + 1 :] if newline != -1 else data[cut:]


def replay_log_tail(path: str | os.PathLike[str], window: int = LOG_WINDOW) -> tuple[bytes, int]:
    """The replay of a tty run's log as it stands, and the log offset it covers up to
    (follow the log from there). Reads at most the last `window` bytes."""
    replay = ScreenReplay()
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        start = max(0, end - window)
        fh.seek(start)
        data = fh.read(end - start)
    if start > 0:
        newline = data.find(b"\n")
        data = data[newline + 1 :] if newline != -1 else data
    for offset in range(0, len(data), 1 << 20):
        replay.feed(data[offset : offset + (1 << 20)])
    return replay.replay(), end
