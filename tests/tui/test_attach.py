"""The attached view (AttachScreen): against real tty runs through their shim's socket
(attach, type, ctrl+c, detach, a read-only second viewer and take-over, random keys),
and SVG snapshots of how it looks, from fixed screens."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from textual.pilot import Pilot

from qqtui.config import Settings
from qqtui.core import ttyproto
from qqtui.core.records import Status
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.tui.app import QqApp
from qqtui.tui.screens.attach import AttachApp, AttachScreen
from qqtui.tui.screens.confirm import ConfirmScreen
from qqtui.tui.screens.main import MainScreen
from qqtui.tui.widgets.run_table import RunTable
from qqtui.tui.widgets.send_line import SendLine
from qqtui.tui.widgets.terminal_view import TerminalView
from tests.tui.conftest import RANDOM_KEY_NAMES, run_status, select_run, wait_until
from tests.tui.test_app import SIZE, add, app_for, toasts

# -- snapshots: the attached view from a fixed screen -------------------------------

AGENT_SCREEN = (
    b"\x1b[?1049h\x1b[2J\x1b[H"
    b"\x1b[1;37;44m qq agent \xc2\xb7 fix the flaky test                              \x1b[0m\r\n"
    b"\r\n"
    b"  \x1b[32m\xe2\x9c\x94\x1b[0m read tests/test_retry.py\r\n"
    b"  \x1b[32m\xe2\x9c\x94\x1b[0m ran pytest -k retry \x1b[2m(3 passed, 1 failed)\x1b[0m\r\n"
    b"  \x1b[33m\xe2\x97\x8f\x1b[0m edit qqtui/retry.py\r\n"
    b"\r\n"
    b"\x1b[31m-    time.sleep(0.1)\x1b[0m\r\n"
    b"\x1b[32m+    time.sleep(backoff(attempt))\x1b[0m\r\n"
    b"\r\n"
    b"\x1b[1mApply this change? [y/n]\x1b[0m "
)
SNAP_SIZE = (80, 16)


class FixedConnection:
    """A stand-in for TtyConnection with a fixed screen, for deterministic snapshots
    only: what it draws is the run's screen the shim would send, and nothing is read."""

    def __init__(self, *, you_write: bool, writer: str | None, frames: list[Any]) -> None:
        self.cols, self.rows = SNAP_SIZE[0], SNAP_SIZE[1] - 1
        self.screen = AGENT_SCREEN
        self.writer = writer
        self.you_write = you_write
        self.welcome = {"cols": self.cols, "rows": self.rows, "writer": writer}
        self.sent: list[bytes] = []
        self._frames = list(frames)
        self._closed = threading.Event()

    def read_frames(self, timeout: float) -> list[tuple[bytes, bytes]]:
        if self._frames:
            frames, self._frames = self._frames, []
            return frames
        self._closed.wait(timeout)
        return []

    def send_input(self, data: bytes) -> None:
        self.sent.append(data)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows

    def take(self) -> None:
        pass

    def close(self) -> None:
        self._closed.set()


def _snapshot_app(connection: FixedConnection) -> AttachApp:
    return AttachApp(AttachScreen(connection, 7, detach_key="ctrl+]"))  # type: ignore[arg-type]


async def _settled(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.2)


def test_snapshot_attached(snap_compare: Any) -> None:
    app = _snapshot_app(FixedConnection(you_write=True, writer="qqtui app", frames=[]))
    assert snap_compare(app, terminal_size=SNAP_SIZE, run_before=_settled)


def test_snapshot_read_only(snap_compare: Any) -> None:
    app = _snapshot_app(
        FixedConnection(you_write=False, writer="qqtui attach (pid 4242)", frames=[])
    )
    assert snap_compare(app, terminal_size=SNAP_SIZE, run_before=_settled)


def test_snapshot_ended(snap_compare: Any) -> None:
    frames = [
        (ttyproto.OUTPUT, b"y\r\n\x1b[?1049l$ qq -m 'fix the flaky test'\r\napplied 1 edit\r\n"),
        (ttyproto.EXIT, b'{"exit_code": 0, "signal": null}'),
    ]
    app = _snapshot_app(FixedConnection(you_write=True, writer="qqtui app", frames=frames))
    assert snap_compare(app, terminal_size=SNAP_SIZE, run_before=_settled)


# -- real tty runs ------------------------------------------------------------------

PROMPT = (
    "import sys\n"
    "sys.stdout.write('ready> '); sys.stdout.flush()\n"
    "for line in sys.stdin:\n"
    "    sys.stdout.write('got ' + line.strip().upper() + '\\r\\nready> '); sys.stdout.flush()\n"
)


def screen_text(app: QqApp | AttachApp) -> str:
    view = app.screen.query_one(TerminalView)
    return "\n".join(view.terminal.display)


async def attach(pilot: Pilot[Any], app: QqApp, run_id: int) -> AttachScreen:
    from qqtui.core.ttyclient import tty_socket

    await select_run(pilot, app, run_id)

    def ready() -> bool:
        # What the app knows of the run (its last poll) must say it started, and its
        # shim must serve the socket: before that `a` rightly answers "still starting".
        run = getattr(app.screen, "selected_run", None)
        return bool(run and run.id == run_id and run.pid and tty_socket(app.home, run).exists())

    await wait_until(pilot, ready, what="the run started on its terminal")
    await pilot.press("a")
    await wait_until(pilot, lambda: isinstance(app.screen, AttachScreen), what="attached")
    screen = app.screen
    assert isinstance(screen, AttachScreen)
    return screen


def _tty_run(store: Store, settings: Settings, script: str) -> int:
    return add(store, settings, sys.executable, "-c", script, tty=True, tty_size=(80, 20))


@pytest.mark.asyncio
async def test_attach_type_see_the_echo_detach_and_the_run_goes_on(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        screen = await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "ready>" in screen_text(app), what="the prompt")
        bar = str(screen.query_one("#attach-bar").render())
        assert f"attached to run {run_id}" in bar and "ctrl+] detaches" in bar
        # q, s and ? are the app's keys on the main screen; attached they are the run's.
        await pilot.press("h", "q", "s", "question_mark", "enter")
        await wait_until(pilot, lambda: "got HQS?" in screen_text(app), what="the echo")
        assert "hqs?" in screen_text(app), "the terminal's own echo"
        # So are the app's priority keys: ctrl+p (no palette; the terminal echoes ^P)
        # and ctrl+q (no quit; the terminal's line discipline takes it as XON).
        await pilot.press("ctrl+p", "ctrl+q")
        await wait_until(pilot, lambda: "^P" in screen_text(app), what="ctrl+p at the run")
        await pilot.pause(0.2)
        assert app.is_running and app.screen is screen
        attached_size = (screen.terminal.terminal.columns, screen.terminal.terminal.lines)
        assert attached_size != (80, 20), "the run's size follows the app's"
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="detached")
        assert app.is_running
        # The pane draws the run at its size now, which the record does not know.
        pane = app.screen.query_one(TerminalView)
        await wait_until(
            pilot,
            lambda: (pane.terminal.columns, pane.terminal.lines) == attached_size,
            what="the pane at the run's new size",
        )
        await pilot.pause(0.5)
        assert run_status(tui_settings.db_url, run_id) is Status.RUNNING, "the run goes on"
        # Attach again: the screen is still there (the shim's SCREEN frame).
        await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "got HQS?" in screen_text(app))
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


@pytest.mark.asyncio
async def test_the_main_screen_rests_while_attached_and_catches_up_on_detach(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    """Nobody sees the main screen under the attached view: it neither applies polls
    nor follows the run's log (that time is the echo's), and shows all of it on return."""
    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        main = app.screen
        assert isinstance(main, MainScreen)
        screen = await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "ready>" in screen_text(app), what="the prompt")
        later = add(tui_store, tui_settings, "true", name="added-while-attached")
        await pilot.press("x", "enter")
        await wait_until(pilot, lambda: "got X" in screen_text(app), what="the echo")
        poll = app.last_poll
        await wait_until(
            pilot,
            lambda: app.last_poll is not poll and later in app.last_poll.result.runs,
            what="a poll that has the new run",
        )
        await pilot.pause(0.3)  # six of the pane's log polls
        pane = main.query_one(TerminalView)
        assert "got X" not in "\n".join(pane.terminal.display), "the pane under is resting"
        assert later not in main.query_one(RunTable).run_ids, "the table under is resting"
        assert screen is app.screen
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(pilot, lambda: app.screen is main, what="detached")
        await wait_until(pilot, lambda: later in main.query_one(RunTable).run_ids)
        await wait_until(pilot, lambda: "got X" in "\n".join(pane.terminal.display))


@pytest.mark.asyncio
async def test_ctrl_c_reaches_the_run_and_its_end_shows(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    sys.stdout.write('\\r\\ngot SIGINT\\r\\n'); sys.stdout.flush(); sys.exit(3)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "sys.stdout.write('waiting for ctrl+c'); sys.stdout.flush()\n"
        "time.sleep(120)\n"
    )
    run_id = _tty_run(tui_store, tui_settings, script)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        screen = await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "waiting for ctrl+c" in screen_text(app))
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: "got SIGINT" in screen_text(app), what="the handler")
        await wait_until(pilot, lambda: screen.ended is not None, what="the end")
        assert screen.ended is not None and f"run {run_id} ended (exit 3)" in screen.ended
        assert "got SIGINT" in screen_text(app), "its final screen stays"
        await pilot.press("x")  # any key now detaches
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert app.is_running
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.FAILED)


@pytest.mark.asyncio
async def test_a_second_viewer_is_read_only_until_it_takes_over(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    from qqtui.core.ttyclient import TtyConnection

    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        run = Snapshot(tui_settings.db_url).run(run_id)
        assert run is not None
        path = await wait_until(
            pilot, lambda: _attachable(tui_settings, run_id), what="the run's socket"
        )
        first = TtyConnection.open(path, want="write", name="the first viewer")  # type: ignore[arg-type]
        try:
            assert first.you_write
            screen = await attach(pilot, app, run_id)
            await wait_until(pilot, lambda: "ready>" in screen_text(app))
            assert not screen.you_write and screen.writer == "the first viewer"
            bar = str(screen.query_one("#attach-bar").render())
            assert "read-only: the first viewer holds input" in bar and "ctrl+t" in bar
            await pilot.press("z", "enter")  # a reader's keys go nowhere
            first.send_input(b"from the first\r")
            await wait_until(pilot, lambda: "got FROM THE FIRST" in screen_text(app))
            assert "got Z" not in screen_text(app)
            await pilot.press("ctrl+t")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(pilot, lambda: screen.you_write, what="the take-over")
            assert "attached to run" in str(screen.query_one("#attach-bar").render())
            await pilot.press("w", "enter")
            await wait_until(pilot, lambda: "got W" in screen_text(app))
        finally:
            first.close()


def _attachable(settings: Settings, run_id: int) -> object:
    from qqtui.core.records import QqError
    from qqtui.core.ttyclient import check_attachable

    run = Snapshot(settings.db_url).run(run_id)
    try:
        return check_attachable(settings.home, run, None) if run is not None else None
    except QqError:
        return None


@pytest.mark.asyncio
async def test_a_run_without_a_terminal_gets_a_toast(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(tui_store, tui_settings, "sleep", "60")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        await select_run(pilot, app, run_id)
        await pilot.press("a")
        await wait_until(pilot, lambda: toasts(app), what="a toast")
        assert isinstance(app.screen, MainScreen)
        assert any("terminal" in t for t in toasts(app)), toasts(app)


@pytest.mark.asyncio
async def test_the_input_line_types_into_the_selected_run_without_attaching(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    from qqtui.core.ttyclient import tty_socket

    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    pipe_id = add(tui_store, tui_settings, "sleep", "60")  # queued behind it: same cwd
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, pipe_id)
        await pilot.press("i")
        await wait_until(pilot, lambda: any("no terminal" in t for t in toasts(app)))
        assert not app.screen.query_one(SendLine).has_focus

        await select_run(pilot, app, run_id)

        def ready() -> bool:
            run = getattr(app.screen, "selected_run", None)
            return bool(run and run.id == run_id and run.pid and tty_socket(app.home, run).exists())

        await wait_until(pilot, ready, what="the run started on its terminal")
        pane = app.screen.query_one(TerminalView)

        def pane_text() -> str:
            return "\n".join(pane.terminal.display)

        await wait_until(pilot, lambda: "ready>" in pane_text(), what="the prompt")
        # One burst, as a fast typist sends it: the letters after "i" are the box's.
        await pilot.press("i", "h", "q", "enter")
        await wait_until(pilot, lambda: "got HQ" in pane_text(), what="the line reached the run")
        await wait_until(
            pilot, lambda: any(f"Sent 3 bytes to run {run_id}" in t for t in toasts(app))
        )
        box = app.screen.query_one(SendLine)
        assert not box.has_class("-open") and app.screen.query_one(RunTable).has_focus
        # Escape closes it unsent; an empty line is the Enter alone.
        await pilot.press("i", "z", "z", "escape")
        assert not box.has_class("-open") and app.screen.query_one(RunTable).has_focus
        await pilot.press("i", "enter")
        await wait_until(pilot, lambda: pane_text().count("ready>") >= 3, what="the bare Enter")
        assert "ZZ" not in pane_text()
        assert run_status(tui_settings.db_url, run_id) is Status.RUNNING


@pytest.mark.asyncio
async def test_random_keys_while_attached_and_in_the_pane(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    script = (
        "import sys, time\nsys.stdout.write('\\x1b[?1049h')\nn = 0\n"
        "while True:\n"
        "    n += 1\n"
        "    sys.stdout.write('\\x1b[H\\x1b[3%dmframe %d\\x1b[0m' % (n % 7 + 1, n))\n"
        "    sys.stdout.flush(); time.sleep(0.03)\n"
    )
    run_id = _tty_run(tui_store, tui_settings, script)
    app = app_for(tui_settings, tui_store)
    rng = random.Random(15)
    keys = [*RANDOM_KEY_NAMES, "ctrl+c", "ctrl+d", "enter", "ctrl+z"]
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        await select_run(pilot, app, run_id)
        # In the pane (the run's screen, not attached): the app's own keys.
        pane = app.screen.query_one(TerminalView)
        await wait_until(pilot, lambda: "frame" in "\n".join(pane.terminal.display))
        await pilot.press("tab")
        for _ in range(40):
            burst = [rng.choice(list(RANDOM_KEY_NAMES)) for _ in range(rng.randint(1, 5))]
            await pilot.press(*burst)
            await pilot.pause(rng.choice([0, 0.02, 0.1]))
            assert app._exception is None and app.is_running, burst
            if not isinstance(app.screen, MainScreen):
                app.pop_screen()
        # Attached: every key is the run's, ctrl+c included, until the detach key.
        app.screen.query_one("#runs").focus()
        await select_run(pilot, app, run_id)
        screen = await attach(pilot, app, run_id)
        for _ in range(60):
            burst = [rng.choice(keys) for _ in range(rng.randint(1, 5))]
            await pilot.press(*burst)
            await pilot.pause(rng.choice([0, 0.02, 0.1]))
            assert app._exception is None and app.is_running, burst
            assert app.screen is screen or screen.ended is not None
            if screen.ended is not None:
                break
        if app.screen is screen:
            await pilot.press("ctrl+right_square_bracket")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


# -- qqtui attach ID ----------------------------------------------------------------


def test_qqtui_attach_a_run_without_a_terminal_is_one_error_line(
    qq: Any, home: Any, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = qq("add", "--shared-workspace", "--", "sleep", "30", check=True).stdout.strip()
    out = qq("attach", run_id)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qqtui: error: "), out.stderr
    assert qq("attach", "999").stderr.strip() == "qqtui: error: no run with id 999"


def test_qqtui_attach_in_a_terminal_types_into_the_run_and_detaches(
    tmp_path: Any, tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    from tests.tui.conftest import clean_env
    from tests.tui.test_tmux_e2e import TMUX, Tmux

    if TMUX is None:
        pytest.skip("tmux is not installed")
    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    deadline = time.monotonic() + 20
    while _attachable(tui_settings, run_id) is None:
        assert time.monotonic() < deadline, "the run's socket never came"
        time.sleep(0.1)
    tmux = Tmux(f"qqtui-attach-{tmp_path.name}")
    done = tmp_path / "exit-code"
    try:
        tmux.start(
            f"{sys.executable} -m qqtui attach {run_id}; echo $? > {done}; sleep 30",
            clean_env(tui_settings.home),
        )
        tmux.wait_for(lambda s: "ready>" in s and f"attached to run {run_id}" in s, "attached")
        tmux.keys("hello", literal=True)
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "got HELLO" in s, "the run's answer")
        tmux.keys("C-]")
        deadline = time.monotonic() + 20
        while not done.exists() or not done.read_text().strip():
            assert time.monotonic() < deadline, tmux.screen()
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
        assert run_status(tui_settings.db_url, run_id) is Status.RUNNING, "the run goes on"
    finally:
        tmux.kill()


@pytest.mark.asyncio
async def test_quitting_the_app_while_attached_leaves_the_run_alone(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = _tty_run(tui_store, tui_settings, PROMPT)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "ready>" in screen_text(app))
        await pilot.press("ctrl+q")  # Textual's quit: the one key the run does not get
        await pilot.pause(0.5)
    assert not app.is_running
    time.sleep(1)
    assert run_status(tui_settings.db_url, run_id) is Status.RUNNING
    path = _attachable(tui_settings, run_id)
    assert path is not None, "its terminal is still served"


RAW_READER = (
    "import os, sys, tty\n"
    "tty.setraw(0)\n"
    "os.write(1, b'\\x1b[?1002h\\x1b[?1006h\\x1b[?2004h\\x1b[?1hmodes on\\r\\n')\n"
    "while True:\n"
    "    data = os.read(0, 1024)\n"
    "    os.write(1, repr(data).encode() + b'\\r\\n')\n"
    "    if data == b'q':\n"
    "        break\n"
)


@pytest.mark.asyncio
async def test_paste_mouse_and_app_cursor_keys_reach_the_run_as_it_asked(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    from textual import events

    run_id = _tty_run(tui_store, tui_settings, RAW_READER)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        screen = await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "modes on" in screen_text(app))
        view = screen.terminal
        assert view.terminal.bracketed_paste and view.terminal.app_cursor
        screen.post_message(events.Paste("two\nlines"))
        await wait_until(pilot, lambda: r"b'\x1b[200~two\rlines\x1b[201~'" in screen_text(app))
        await pilot.press("up")  # application cursor keys: SS3, not CSI
        await wait_until(pilot, lambda: r"b'\x1bOA'" in screen_text(app))
        await pilot.click(TerminalView, offset=(4, 2))
        await wait_until(pilot, lambda: r"\x1b[<0;5;3M" in screen_text(app), what="the click")
        # A drag (1002): motion with the button held is reported, motion without is not.
        await pilot.hover(TerminalView, offset=(9, 3))
        await pilot.mouse_down(TerminalView, offset=(6, 2))
        await pilot.hover(TerminalView, offset=(7, 2))
        await wait_until(pilot, lambda: r"\x1b[<32;8;3M" in screen_text(app), what="the drag")
        await pilot.mouse_up(TerminalView, offset=(7, 2))
        await wait_until(pilot, lambda: r"\x1b[<0;8;3m" in screen_text(app), what="the release")
        assert r"\x1b[<35;10;4M" not in screen_text(app), "no motion without a button"
        await pilot.press("q")
        await wait_until(pilot, lambda: screen.ended is not None)


@pytest.mark.asyncio
async def test_the_detach_key_comes_from_config_toml(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    (tui_settings.home / "config.toml").write_text('[tui]\ndetach_key = "ctrl+b"\n')
    run_id = _tty_run(tui_store, tui_settings, RAW_READER)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: run_status(tui_settings.db_url, run_id) is Status.RUNNING)
        screen = await attach(pilot, app, run_id)
        await wait_until(pilot, lambda: "modes on" in screen_text(app))
        assert "ctrl+b detaches" in str(screen.query_one("#attach-bar").render())
        await pilot.press("ctrl+right_square_bracket")  # now the run's
        await wait_until(pilot, lambda: r"b'\x1d'" in screen_text(app))
        assert app.screen is screen
        await pilot.press("ctrl+b")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


def test_a_bad_detach_key_in_config_toml_names_the_file(tmp_path: Any) -> None:
    from qqtui.config import DEFAULT_DETACH_KEY, detach_key

    assert detach_key(tmp_path) == DEFAULT_DETACH_KEY
    (tmp_path / "config.toml").write_text('[tui]\ndetach_key = "ctrl+]"\n')
    assert detach_key(tmp_path) == "ctrl+]"
    (tmp_path / "config.toml").write_text("[tui]\ndetach_key = 3\n")
    with pytest.raises(ValueError, match=r"config\.toml: \[tui\] detach_key must be a key"):
        detach_key(tmp_path)
    (tmp_path / "config.toml").write_text('[tui]\ndetach_key = "ctrl+\\u001b[31m"\n')
    with pytest.raises(ValueError):
        detach_key(tmp_path)
