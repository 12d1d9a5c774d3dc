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
from pyte.screens import Cursor, StaticDefaultDict

SCROLLBACK_LINES = 10_000
ALTERNATE_MODES = frozenset({1049, 1047, 47})


class TerminalScreen(pyte.HistoryScreen):
    """pyte's HistoryScreen with xterm's alternate screen (modes 1049, 1047, 47)."""

    def __init__(self, columns: int, lines: int, history: int = SCROLLBACK_LINES) -> None:
        self.alternate = False
        self._main: tuple[dict[int, Any], Cursor] | None = None
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
