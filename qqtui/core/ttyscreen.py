"""A tty run's screen, emulated: pyte's screen with scrollback plus the alternate
screen pyte lacks, so that a full-screen program that exits leaves the main screen
as it was (as xterm does), and its frames never flood the scrollback.

Why pyte: it is the maintained pure-Python VT emulator (xterm-256color SGR, wide
characters through wcwidth, scroll margins), it keeps cells rather than bytes, and it
never writes anything back to a terminal: its title, OSC 52 and hyperlink handling
only record or drop them, so only cells leave it.
"""

from __future__ import annotations

from typing import Any

import pyte
from pyte import modes as mo
from pyte.screens import Char, Cursor, StaticDefaultDict

SCROLLBACK_LINES = 10_000
ALTERNATE_MODES = frozenset({1049, 1047, 47})


class TerminalScreen(pyte.HistoryScreen):
    """pyte's HistoryScreen with xterm's alternate screen (modes 1049, 1047, 47)."""

    # HistoryScreen wraps every attribute access in Python (for its paging, which we do
    # not use: viewers scroll `history.top` themselves): two thirds of the time pyte spent
    # drawing a screen went there. What its wrapper did besides paging, showing and
    # hiding the cursor with DECTCEM, pyte's Screen does in set_mode and reset_mode.
    __getattribute__ = object.__getattribute__

    def __init__(self, columns: int, lines: int, history: int = SCROLLBACK_LINES) -> None:
        self.alternate = False
        self._main: tuple[dict[int, Any], Cursor] | None = None
        self._chars: dict[Char, _CharsOf] = {}
        self.history_pushed = 0
        """Lines ever moved into the scrollback: with `len(history.top)`, a stable number
        for each history line (a viewer's cache key) as old ones fall off the front."""
        super().__init__(columns, lines, history=history)

    @property
    def app_cursor(self) -> bool:
        """Application cursor keys (DECCKM): arrows go as SS3, not CSI."""
        return (1 << 5) in self.mode

    @property
    def bracketed_paste(self) -> bool:
        """The program asked for pastes wrapped in ESC[200~ ... ESC[201~ (mode 2004)."""
        return (2004 << 5) in self.mode

    def draw(self, data: str) -> None:
        """pyte's draw, with a fast path for printable ASCII in replace mode (what
        redraws of a screen are mostly made of): whole runs of a line at once, and one
        shared Char per character and attributes, instead of a Char built per cell."""
        data = data.translate(self.g1_charset if self.charset else self.g0_charset)
        if not (data.isascii() and data.isprintable()) or mo.IRM in self.mode:
            super().draw(data)
            return
        cursor, columns = self.cursor, self.columns
        chars = self._chars.get(cursor.attrs)
        if chars is None:
            if len(self._chars) > 256:
                self._chars.clear()
            chars = self._chars[cursor.attrs] = _CharsOf(cursor.attrs)
        start = 0
        while start < len(data):
            if cursor.x >= columns:
                if mo.DECAWM in self.mode:
                    self.dirty.add(cursor.y)
                    self.carriage_return()
                    self.linefeed()
                else:
                    cursor.x = columns - 1
            piece = data[start : start + columns - cursor.x]
            x = cursor.x
            self.buffer[cursor.y].update(
                zip(range(x, x + len(piece)), map(chars.__getitem__, piece), strict=True)
            )
            cursor.x = x + len(piece)
            start += len(piece)
        self.dirty.add(cursor.y)

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALTERNATE_MODES.intersection(modes):
            if not self.alternate:
                self._main = (
                    {y: _copy_line(line) for y, line in self.buffer.items()},
                    _copy(self.cursor),
                )
                self.alternate = True
            # xterm clears the alternate screen on the way in.
            self.buffer.clear()
            self.dirty.update(range(self.lines))
            modes = tuple(m for m in modes if m not in ALTERNATE_MODES)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and ALTERNATE_MODES.intersection(modes):
            if self.alternate and self._main is not None:
                buffer, cursor = self._main
                self.buffer.clear()
                self.buffer.update(buffer)
                self.cursor = cursor
                self.dirty.update(range(self.lines))
            self.alternate, self._main = False, None
            modes = tuple(m for m in modes if m not in ALTERNATE_MODES)
        super().reset_mode(*modes, **kwargs)

    def index(self) -> None:
        if self.alternate:
            # Lines scrolled off a full-screen program's screen are not history.
            pyte.Screen.index(self)
        else:
            # As HistoryScreen.index decides to keep the line that leaves.
            _, bottom = self.margins or (0, self.lines - 1)
            if self.cursor.y == bottom:
                self.history_pushed += 1
            super().index()

    def reset(self) -> None:
        self.alternate, self._main = False, None
        super().reset()


class _CharsOf(dict[str, Char]):
    """The Char of each character drawn with the attributes `attrs` (made once)."""

    def __init__(self, attrs: Char) -> None:
        super().__init__()
        self.attrs = attrs

    def __missing__(self, data: str) -> Char:
        char = self[data] = self.attrs._replace(data=data)
        return char


def _copy_line(line: StaticDefaultDict) -> StaticDefaultDict:
    copy = StaticDefaultDict(line.default)
    copy.update(line)
    return copy


def _copy(cursor: Cursor) -> Cursor:
    copy = Cursor(cursor.x, cursor.y, cursor.attrs)
    copy.hidden = cursor.hidden
    return copy


def screen_text(data: bytes, columns: int, lines: int) -> list[str]:
    """The text of the screen `data` draws on a blank terminal of this size."""
    screen = TerminalScreen(columns, lines, history=0)
    pyte.ByteStream(screen).feed(data)
    return screen.display
