"""TerminalScreen's fast path for printable ASCII draws exactly what pyte's own draw
does: the same cells, attributes, cursor, dirty rows and scrollback, on random streams."""

from __future__ import annotations

import random

import pyte

from qqtui.core.ttyscreen import TerminalScreen

PIECES = [
    "hello",
    "x" * 37,
    "word ",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "\x08",
    "\x1b[31m",
    "\x1b[1;44m",
    "\x1b[38;5;200m",
    "\x1b[0m",
    "\x1b[7m",
    "\x1b[H",
    "\x1b[5;70H",
    "\x1b[3;1H",
    "\x1b[2J",
    "\x1b[K",
    "\x1b[?7l",  # autowrap off
    "\x1b[?7h",
    "\x1b[4h",  # insert mode
    "\x1b[4l",
    "\x1b(0lqqk\x1b(B",  # DEC line drawing
    "中文",
    "e\u0301",
    "\x1b[?1049h",
    "\x1b[?1049l",
    "\x1b[2;5r",  # scroll margins
    "\x1b[r",
    "\x1bM",
]


class PyteDraw(TerminalScreen):
    """The same screen with pyte's own draw, for comparison."""

    def draw(self, data: str) -> None:
        pyte.Screen.draw(self, data)


def _state(screen: TerminalScreen) -> tuple[object, ...]:
    cells = tuple(
        tuple(screen.buffer[y][x] for x in range(screen.columns)) for y in range(screen.lines)
    )
    history = tuple(tuple(line.items()) for line in screen.history.top)
    return cells, (screen.cursor.x, screen.cursor.y, screen.cursor.attrs), history


def test_the_fast_draw_matches_pytes_on_random_streams() -> None:
    rng = random.Random(15)
    for _ in range(200):
        fast, slow = TerminalScreen(72, 8, history=50), PyteDraw(72, 8, history=50)
        fast_stream, slow_stream = pyte.Stream(fast), pyte.Stream(slow)
        for _ in range(rng.randint(1, 60)):
            piece = rng.choice(PIECES)
            fast_stream.feed(piece)
            slow_stream.feed(piece)
        assert _state(fast) == _state(slow)
        assert fast.history_pushed == slow.history_pushed


def test_a_screen_counts_the_lines_it_pushes_to_history() -> None:
    screen = TerminalScreen(10, 3, history=5)
    pyte.Stream(screen).feed("".join(f"{i}\r\n" for i in range(12)))
    assert screen.history_pushed == 10 and len(screen.history.top) == 5
    assert [line[0].data for line in screen.history.top] == ["5", "6", "7", "8", "9"]
