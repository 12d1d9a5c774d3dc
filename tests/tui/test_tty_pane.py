"""The output pane of a tty run: its terminal's screen (TerminalView), from the log's
bounded replay and then the log's growth; scrollback, search, hostile bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.color import Color
from textual.app import App, ComposeResult

from qqtui.config import Settings
from qqtui.core.intents import output_log_path
from qqtui.core.records import Status
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.terminal_view import TerminalView, cell_colour, cell_text
from tests.tui.conftest import clean_env, run_status, select_run, wait_until
from tests.tui.test_app import SIZE, add, app_for

# A full-screen program: the alternate screen, cursor moves, colours, then it waits.
FULL_SCREEN = r"""
import sys, time
w = sys.stdout.write
w("before the program\r\n")
w("\x1b[?1049h\x1b[2J\x1b[H")
w("\x1b[3;5H\x1b[1;31mRED TITLE\x1b[0m")
w("\x1b[6;1H\x1b[38;5;46mgreen 256\x1b[0m \x1b[48;2;10;20;30mtruecolour\x1b[0m")
w("\x1b[8;1Hstep 1")
sys.stdout.flush()
time.sleep(0.5)
w("\x1b[8;1Hstep 2 done")
sys.stdout.flush()
time.sleep(float(sys.argv[1]))
w("\x1b[?1049lafter the program\r\n")
sys.stdout.flush()
"""

# What a hostile run writes: clipboard, title, hyperlink, DCS, C1 CSI, clears, bidi
# override, a long line. Only the visible words may end up in cells.
HOSTILE = (
    b"\x1b]52;c;SGFja2Vk\x07clip "
    b"\x1b]0;EVIL TITLE\x07title "
    b"\x1b]8;;http://evil.example\x07link\x1b]8;;\x07 "
    b"\x1bP+q544e\x1b\\dcs "
    b"\xc2\x9b31mc1 "
    b"\xe2\x80\xaereversed\xe2\x80\xac "
    b"\x07\x00\x7f"
    b"\x1b[2J\x1b[Hcleared\r\n" + b"L" * 500 + b"\r\nend\r\n"
)


def terminal_text(view: TerminalView) -> str:
    return "\n".join(view.line_text(i) for i in range(view._line_count()))


class _Viewer(App[None]):
    def compose(self) -> ComposeResult:
        yield TerminalView(40, 10, id="term")


@pytest.mark.asyncio
async def test_a_tty_runs_pane_shows_its_screen_then_its_final_screen(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(
        tui_store, tui_settings, sys.executable, "-c", FULL_SCREEN, "3", tty=True, tty_size=(60, 12)
    )
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, run_id)
        view = app.screen.query_one(TerminalView)
        assert view.display and not app.screen.query_one(OutputView).display
        await wait_until(pilot, lambda: "step 2 done" in terminal_text(view), what="the screen")
        screen = view.terminal
        assert (screen.columns, screen.lines) == (60, 12), "the run's size, not the pane's"
        assert screen.display[2][4:13] == "RED TITLE", "cursor movement lands where it says"
        assert "before the program" not in terminal_text(view), "alternate screen"
        title = screen.buffer[2][4]
        assert title.fg == "red" and title.bold
        assert cell_colour(screen.buffer[5][0].fg) == Color.parse("#00ff00")
        # The strips drawn carry the colours (Rich styles), not escape sequences.
        strip = view._line_strip(len(screen.history.top) + 2, cursor=False)
        styles = [seg.style for seg in strip if "RED" in seg.text]
        assert styles and styles[0].color == Color.parse("red") and styles[0].bold
        assert "a attaches" in str(view.border_subtitle)
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.SUCCEEDED)
        await wait_until(pilot, lambda: "after the program" in terminal_text(view))
        # Ended: nothing to attach to, and the pane says what it shows.
        await wait_until(pilot, lambda: "succeeded: its last screen" in str(view.border_subtitle))
        text = terminal_text(view)
        assert "before the program" in text and "RED TITLE" not in text, "main screen is back"


def visible_text(view: TerminalView) -> str:
    top = int(view.scroll_y)
    return "\n".join(view.line_text(i) for i in range(top, top + view.size.height))


@pytest.mark.asyncio
async def test_a_pane_smaller_than_the_terminal_shows_the_rows_in_use(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    # A 40-row terminal in a pane of about 20: two lines at the top of the main screen
    # are what shows (not the blank rows below them); a full-screen prompt on the last
    # row of the alternate screen shows too.
    lines = "import sys; sys.stdout.write('first line\\r\\nsecond line\\r\\n')"
    top_id = add(tui_store, tui_settings, sys.executable, "-c", lines, tty=True, tty_size=(100, 40))
    prompt = (
        "import sys, time; sys.stdout.write('\\x1b[?1049h\\x1b[1;1Htop row"
        "\\x1b[40;1HApply? [y/n]'); sys.stdout.flush(); time.sleep(60)"
    )
    bottom_id = add(
        tui_store, tui_settings, sys.executable, "-c", prompt, tty=True, tty_size=(100, 40)
    )
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, top_id) is Status.SUCCEEDED)
        await select_run(pilot, app, top_id)
        view = app.screen.query_one(TerminalView)
        await wait_until(pilot, lambda: "second line" in terminal_text(view))
        assert view.size.height < 40
        await pilot.pause()
        assert "first line" in visible_text(view) and "second line" in visible_text(view)
        await select_run(pilot, app, bottom_id)
        await wait_until(pilot, lambda: "Apply? [y/n]" in visible_text(view), what="the prompt")
        assert "top row" not in visible_text(view)


@pytest.mark.asyncio
async def test_selecting_a_finished_tty_run_replays_only_its_logs_tail(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(tui_store, tui_settings, "true", tty=True, tty_size=(40, 10))
    await_done = Snapshot(tui_settings.db_url)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.SUCCEEDED)
        run = await_done.run(run_id)
        assert run is not None
        log = output_log_path(tui_settings.home, run)
        # 8 MiB of an old screen, then a clear and the screen that is current: the
        # replay starts after the last clear and never reads the whole log.
        with open(log, "wb") as fh:
            fh.write((b"old screen line\r\n" * 64) * 8192)
            fh.write(b"\x1b[2J\x1b[Hcurrent screen\r\n\x1b[5;3Hthe end")
        await select_run(pilot, app, run_id)
        view = app.screen.query_one(TerminalView)
        await wait_until(pilot, lambda: "the end" in terminal_text(view))
        assert view.terminal.display[0].startswith("current screen")
        assert view.terminal.display[4][2:9] == "the end"
        assert "old screen line" not in terminal_text(view)


@pytest.mark.asyncio
async def test_scrollback_and_screen_are_searchable(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    script = (
        "import sys, time\nfor i in range(60): sys.stdout.write(f'row {i}\\r\\n')\n"
        "sys.stdout.write('needle here\\r\\n'); sys.stdout.flush(); time.sleep(30)"
    )
    run_id = add(tui_store, tui_settings, sys.executable, "-c", script, tty=True, tty_size=(40, 10))
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, run_id)
        view = app.screen.query_one(TerminalView)
        await wait_until(pilot, lambda: "needle here" in terminal_text(view))
        assert len(view.terminal.history.top) >= 50, "lines off the top are scrollback"
        await pilot.press("ctrl+f")
        await pilot.press(*"row 3", "enter")
        await wait_until(pilot, lambda: view.search_query == "row 3")
        # "row 3" and "row 30".."row 39": all in the scrollback.
        assert view.match_count == 11
        first = view.current_match_line
        assert first is not None and first < len(view.terminal.history.top)
        assert "row 3" in view.line_text(first)
        view.action_next_match()
        assert view.current_match_line != first and "row 3" in view.line_text(
            view.current_match_line or 0
        )
        view.search("NEEDLE")
        assert view.match_count == 1
        line = view.current_match_line
        assert line is not None and line >= len(view.terminal.history.top), "on the screen"


@pytest.mark.asyncio
async def test_hostile_bytes_end_up_inert_in_cells() -> None:
    app = _Viewer()
    async with app.run_test(size=(60, 14)) as pilot:
        view = app.query_one(TerminalView)
        view.feed(HOSTILE)
        await pilot.pause(0.1)
        text = terminal_text(view)
        assert "cleared" in text and "end" in text
        for secret in ("SGFja2Vk", "EVIL", "evil.example"):
            assert secret not in text
        # Every character a strip carries is printable: nothing a terminal would obey.
        for i in range(view._line_count()):
            for segment in view._line_strip(i, cursor=True):
                assert all(ch.isprintable() for ch in segment.text), repr(segment.text)
                assert "\u202e" not in segment.text
        # Long lines wrap inside the terminal's width; no strip is wider.
        assert all(
            view._line_strip(i, cursor=False).cell_length == 40 for i in range(view._line_count())
        )


@pytest.mark.asyncio
async def test_a_keys_echo_skips_the_repaint_throttle() -> None:
    app = _Viewer()
    async with app.run_test(size=(60, 14)) as pilot:
        view = app.query_one(TerminalView)
        await pilot.pause(0.1)
        view.feed(b"a")  # nothing painted for a while: painted now
        painted = view._last_repaint
        view.feed(b"b")  # a frame has not passed: painted by the throttle's timer
        assert view._last_repaint == painted and view._repaint_timer is not None
        view.expect_echo()
        view.feed(b"c")  # the key's echo: now, and the pending timer is not needed
        assert view._last_repaint > painted and view._repaint_timer is None
        view.feed(b"d")  # only the first output after the key skips the throttle
        assert view._repaint_timer is not None
        await pilot.pause(0.1)
        assert view._repaint_timer is None and "abcd" in terminal_text(view)


def test_cell_text_keeps_one_printable_character() -> None:
    assert cell_text("a") == "a"
    assert cell_text("中") == "中"
    assert cell_text("e\u0301") == "e\u0301"
    for hostile in ("\x1b", "\x9b", "\x07", "\x7f", "\u202e", "\u200b", "\x1b]52;c;x\x07"):
        assert cell_text(hostile) == " ", repr(hostile)


def test_hostile_bytes_of_a_tty_run_never_reach_the_terminal_under_tmux(tmp_path: Path) -> None:
    """The real app in tmux with set-clipboard on, the raw bytes it writes piped to a
    file: the run's OSC 52 makes no paste buffer, its title is not the pane's, and none
    of its escape sequences is in what the app wrote."""
    from tests.tui.test_tmux_e2e import TMUX, Tmux, _stop_workers

    if TMUX is None:
        pytest.skip("tmux is not installed")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db_url = f"sqlite:///{home / 'qqtui.db'}"
    store = Store.open(db_url)
    script = f"import sys, time\nsys.stdout.buffer.write({HOSTILE!r}); sys.stdout.flush()\ntime.sleep(60)"
    add(store, Settings(home, db_url), sys.executable, "-c", script, tty=True, tty_size=(60, 12))
    store.close()
    raw = tmp_path / "raw.out"
    tmux = Tmux(f"qqtui-tty-{os.getpid()}")
    try:
        # The app starts after a second: pipe-pane is on by then, and sees all it writes.
        tmux.start(f"sleep 1; exec {sys.executable} -m qqtui", clean_env(home))
        subprocess.run([*tmux.base, "set", "-g", "set-clipboard", "on"], check=True)
        subprocess.run([*tmux.base, "pipe-pane", "-t", tmux.session, f"cat >> {raw}"], check=True)
        tmux.wait_for(lambda s: "cleared" in s and "end" in s, "the run's screen in the pane")
        time.sleep(1)
        buffers = subprocess.run(
            [*tmux.base, "list-buffers"], capture_output=True, text=True, check=False
        ).stdout
        assert buffers.strip() == "", f"a paste buffer appeared: {buffers!r}"
        title = subprocess.run(
            [*tmux.base, "display-message", "-p", "-t", tmux.session, "#{pane_title}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "EVIL" not in title
        written = raw.read_bytes()
        assert b"cleared" in written, "the pipe saw the app's output"
        for needle in (b"\x1b]52", b"SGFja2Vk", b"EVIL", b"evil.example", b"\x1bP+q", b"\xc2\x9b"):
            assert needle not in written, needle
        assert "\u202e".encode() not in written
    finally:
        tmux.keys("q")
        tmux.kill()
        _stop_workers(home, db_url)
