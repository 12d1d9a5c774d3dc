"""ScreenReplay against a real emulator: the screen its replay draws is the screen the
whole stream draws, whatever the stream does (clears, alternate screen, modes)."""

from __future__ import annotations

import random
from pathlib import Path

import pyte

from qqtui.core.ttyreplay import REPLAY_CAP, ScreenReplay, replay_log_tail
from qqtui.core.ttyscreen import TerminalScreen

COLS, ROWS = 40, 10


def screen_of(data: bytes) -> list[str]:
    screen = TerminalScreen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(data)
    return [*screen.display, f"cursor {screen.cursor.x},{screen.cursor.y}"]


PIECES = [
    b"hello world\r\n",
    b"\x1b[2J\x1b[H",
    b"\x1b[?1049h\x1b[H",
    b"\x1b[?1049l",
    b"\x1b[5;3Hpositioned",
    b"\x1b[31mred\x1b[0m",
    b"line without newline",
    b"\x1b[?25l",
    b"\x1b[?25h",
    b"\x1b[K",
    b"\x1b[2;1H\x1b[2K",
]


def test_the_replay_draws_the_screen_the_whole_stream_draws() -> None:
    rng = random.Random(7)
    for _case in range(200):
        stream = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 60)))
        replay = ScreenReplay()
        # Fed in arbitrary splits, as reads from a pty arrive: sequences straddle feeds.
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 9)
            replay.feed(stream[pos : pos + step])
            pos += step
        assert screen_of(replay.replay()) == screen_of(stream), stream


def test_the_replay_is_bounded_and_starts_at_a_line(tmp_path: Path) -> None:
    replay = ScreenReplay()
    for i in range(100_000):
        replay.feed(b"\x1b[32mline %d\x1b[0m\r\n" % i)
    out = replay.replay()
    assert len(out) <= REPLAY_CAP
    assert out.startswith(b"\x1b[32mline ")
    assert (
        screen_of(out)[:-1]
        == screen_of(b"".join(b"line %d\r\n" % i for i in range(99_990, 100_000)))[:-1]
    )


def test_modes_set_before_the_last_clear_are_kept() -> None:
    replay = ScreenReplay()
    replay.feed(b"\x1b[?1h\x1b[?2004h\x1b[?25l some text\x1b[2J\x1b[Hafter")
    out = replay.replay()
    assert b"some text" not in out and out.endswith(b"\x1b[2J\x1b[Hafter")
    assert replay.modes == {1: True, 25: False, 2004: True}
    replay.feed(b"\x1bc")
    assert replay.modes == {}


def test_a_log_tail_replays_its_last_screen_without_reading_the_whole_log(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    with log.open("wb") as fh:
        for i in range(200_000):  # ~9 MiB of full-screen frames
            fh.write(b"\x1b[2J\x1b[H frame %d \x1b[3;1H" % i + b"=" * 20 + b"\r\n")
    data, end = replay_log_tail(log)
    assert end == log.stat().st_size
    assert screen_of(data)[0].strip() == "frame 199999"
    assert len(data) < 100
