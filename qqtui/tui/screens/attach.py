"""AttachScreen: a tty run's terminal, full screen, with every key, paste and mouse
event sent to the run until the detach key.

The screen is drawn by TerminalView from the run's socket (SCREEN, then OUTPUT), so
the emulation and the sanitising are the output pane's. The socket is read in a thread
worker that posts each batch of frames; input is written from the app's thread (one
small send per key). Detaching or quitting only closes this viewer's connection: the
run goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from qqtui.core import ttyproto
from qqtui.core.records import QqError, RunRecord
from qqtui.core.termtext import plain_field
from qqtui.core.ttykeys import encode_key, encode_paste
from qqtui.tui.screens.confirm import ConfirmScreen
from qqtui.tui.widgets.terminal_view import TerminalView

if TYPE_CHECKING:
    from qqtui.core.ttyclient import TtyConnection

DEFAULT_DETACH_KEY = "ctrl+]"
READ_TIMEOUT_S = 0.25
# Mouse reporting modes a program may turn on, and SGR encoding (1006).
_MOUSE_MODES = (1000, 1002, 1003)
_DRAG_MOTION, _ANY_MOTION = 1002, 1003
_SGR_MOUSE = 1006


def textual_key(key: str) -> str:
    """A key as written in config.toml ("ctrl+]") in Textual's spelling."""
    from textual.keys import _character_to_key

    *mods, base = key.split("+") if not key.endswith("++") else [*key[:-2].split("+"), "+"]
    if len(base) == 1 and not base.isalnum():
        base = _character_to_key(base)
    return "+".join([*mods, base])


class AttachScreen(Screen[None]):
    """The attached view of one run: its terminal and a one-line bar."""

    AUTO_FOCUS = None  # nothing has the focus: every key is the screen's, for the run

    BINDINGS: list[BindingType] = [
        Binding(
            "ctrl+right_square_bracket",
            "detach",
            "Detach",
            key_display="ctrl+]",
            tooltip="Leave the run's terminal (the run goes on)",
            id="attach.detach",
            priority=True,
        ),
        Binding(
            "ctrl+t",
            "take",
            "Take over",
            tooltip="Take the input from the viewer who holds it (asks first)",
            id="attach.take",
            priority=True,
        ),
    ]

    class _Frames(Message):
        def __init__(self, frames: list[tuple[bytes, bytes]]) -> None:
            super().__init__()
            self.frames = frames

    class _Closed(Message):
        def __init__(self, error: str | None) -> None:
            super().__init__()
            self.error = error

    def __init__(self, connection: TtyConnection, run_id: int, *, detach_key: str) -> None:
        super().__init__()
        self.connection = connection
        self.run_id = run_id
        self.detach_key = detach_key
        self.writer: str | None = connection.writer
        self.you_write: bool = connection.you_write
        self.ended: str | None = None
        """Set when the run ended (or the connection closed): any key then detaches."""
        self._buttons_down: set[int] = set()  # for drag reports (mode 1002)

    def compose(self) -> ComposeResult:
        conn = self.connection
        yield Static(id="attach-bar", markup=False)
        yield TerminalView(conn.cols, conn.rows, searchable=False, id="attach-terminal")

    @property
    def terminal(self) -> TerminalView:
        return self.query_one(TerminalView)

    def on_mount(self) -> None:
        view = self.terminal
        view.can_focus = False  # keys are the run's, not the view's search or follow
        view.reset_terminal(self.connection.cols, self.connection.rows, self.connection.screen)
        self.set_focus(None)
        self._show_bar()
        self._resize_run()
        self._read_socket()

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "attach-read")
        self.connection.close()

    def on_resize(self, event: events.Resize) -> None:
        self._resize_run()

    def _resize_run(self) -> None:
        """The run's size follows the view's (only the writer may resize)."""
        if not self.you_write or self.ended is not None:
            return
        size = self.terminal.size
        if size.width < 2 or size.height < 2:
            return
        try:
            self.connection.resize(size.width, size.height)
        except QqError as exc:
            self._connection_lost(str(exc))
            return
        self.terminal.resize_terminal(size.width, size.height)

    # -- the socket ------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="attach-read")
    def _read_socket(self) -> None:
        from qqtui.core.ttyclient import TtyClosed

        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                frames = self.connection.read_frames(READ_TIMEOUT_S)
            except TtyClosed:
                self.post_message(self._Closed(None))
                return
            except (OSError, QqError, ttyproto.ProtocolError) as exc:
                self.post_message(self._Closed(str(exc) or type(exc).__name__))
                return
            if frames:
                self.post_message(self._Frames(frames))

    @on(_Frames)
    def _on_frames(self, message: _Frames) -> None:
        view = self.terminal
        output: list[bytes] = []
        for kind, payload in message.frames:
            if kind == ttyproto.OUTPUT:
                output.append(payload)
                continue
            if output:
                view.feed(b"".join(output))
                output = []
            if kind == ttyproto.SCREEN:
                view.reset_terminal(view.terminal.columns, view.terminal.lines, payload)
            elif kind == ttyproto.STATE:
                self._on_state(ttyproto.decode_json(payload))
            elif kind == ttyproto.EXIT:
                self._on_exit(ttyproto.decode_json(payload))
            elif kind == ttyproto.ERROR:
                error = ttyproto.decode_json(payload).get("error")
                self._connection_lost(plain_field(error or "the run's terminal refused us"))
        if output:
            view.feed(b"".join(output))

    def _on_state(self, state: dict[str, Any]) -> None:
        was_writer = self.you_write
        self.writer = state.get("writer") if isinstance(state.get("writer"), str) else None
        self.you_write = bool(state.get("you_write"))
        cols, rows = state.get("cols"), state.get("rows")
        if isinstance(cols, int) and isinstance(rows, int):
            self.terminal.resize_terminal(cols, rows)
        if self.you_write and not was_writer:
            self._resize_run()
        self._show_bar()

    def _on_exit(self, info: dict[str, Any]) -> None:
        code, sig = info.get("exit_code"), info.get("signal")
        how = f"signal {sig}" if sig else f"exit {code}"
        self.ended = f"run {self.run_id} ended ({how}) · any key detaches"
        self._show_bar()

    @on(_Closed)
    def _on_closed(self, message: _Closed) -> None:
        if self.ended is None:
            self._connection_lost(message.error or "the run's terminal closed")

    def _connection_lost(self, why: str) -> None:
        if self.ended is None:
            self.ended = f"run {self.run_id}: {why} · any key detaches"
        self._show_bar()

    def _show_bar(self) -> None:
        bar = self.query_one("#attach-bar", Static)
        if self.ended is not None:
            text = self.ended
            bar.set_class(True, "-ended")
        elif self.you_write:
            text = f"attached to run {self.run_id} · {self.detach_key} detaches"
            bar.set_class(False, "-read-only")
        else:
            holder = plain_field(self.writer) if self.writer else "nobody"
            text = (
                f"run {self.run_id} read-only: {holder} holds input · ctrl+t to take over"
                f" · {self.detach_key} detaches"
            )
            bar.set_class(True, "-read-only")
        bar.update(text)

    # -- input to the run ------------------------------------------------------------

    def _send(self, data: bytes | None) -> None:
        if not data or not self.you_write or self.ended is not None:
            return
        self.terminal.expect_echo()
        try:
            self.connection.send_input(data)
        except QqError as exc:
            self._connection_lost(str(exc))

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        if self.ended is not None:
            self.action_detach()
            return
        modes = self.terminal.terminal
        self._send(encode_key(event.key, event.character, app_cursor=modes.app_cursor))

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        self._send(encode_paste(event.text, self.terminal.terminal.bracketed_paste))

    def _mouse(self, event: events.MouseEvent, button: int, release: bool = False) -> None:
        event.stop()
        modes = self.terminal.terminal.mode
        if not any(mode << 5 in modes for mode in _MOUSE_MODES):
            return
        self._report_mouse(event, button, release)

    def _report_mouse(self, event: events.MouseEvent, button: int, release: bool) -> None:
        modes = self.terminal.terminal.mode
        offset = event.get_content_offset(self.terminal)
        if offset is None:
            return
        x, y = offset.x + 1, offset.y + 1
        if _SGR_MOUSE << 5 in modes:
            self._send(f"\x1b[<{button};{x};{y}{'m' if release else 'M'}".encode())
        elif x < 224 and y < 224:
            code = 3 if release else button
            self._send(bytes([0x1B, 0x5B, 0x4D, 32 + code, 32 + x, 32 + y]))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        button = max(0, (event.button or 1) - 1)
        self._buttons_down.add(button)
        self._mouse(event, button)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        button = max(0, (event.button or 1) - 1)
        self._buttons_down.discard(button)
        self._mouse(event, button, release=True)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        """Motion, as the program asked: with a button held (1002, a drag), or any
        (1003, hover). Motion is the button's code plus 32; 3 is "no button"."""
        event.stop()
        modes = self.terminal.terminal.mode
        held = min(self._buttons_down) if self._buttons_down else None
        if _ANY_MOTION << 5 in modes or (held is not None and _DRAG_MOTION << 5 in modes):
            self._report_mouse(event, 32 + (3 if held is None else held), False)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._mouse(event, 64)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._mouse(event, 65)

    # -- actions ---------------------------------------------------------------------

    def action_detach(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "take":
            # A writer's ctrl+t is the run's (transpose in readline), not ours.
            return not self.you_write and self.ended is None
        return True

    def action_take(self) -> None:
        holder = plain_field(self.writer) if self.writer else "nobody"

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.connection.take()
            except QqError as exc:
                self._connection_lost(str(exc))

        self.app.push_screen(
            ConfirmScreen(
                "Take over input",
                f"{holder} holds the input of run {self.run_id}.\n"
                "Take it over? They keep a read-only view.",
                "Take over",
            ),
            answered,
        )


def open_attach_screen(
    home: Path, run: RunRecord, host: str | None, *, detach_key: str, name: str
) -> AttachScreen:
    """Connect to the run's terminal as its writer; QqError (one line) when it cannot be.
    (A writer is there already: the shim makes this viewer a reader, the bar says so.)"""
    from qqtui.core.ttyclient import TtyConnection, check_attachable

    path = check_attachable(home, run, host)
    connection = TtyConnection.open(path, want="write", name=name)
    return AttachScreen(connection, run.id, detach_key=detach_key)


def live_terminal_size(home: Path, run: RunRecord, host: str | None) -> tuple[int, int] | None:
    """The size of `run`'s terminal now, from its shim (None when it has none to tell):
    a viewer may have resized it since the size in its record. Blocks (a thread's job)."""
    from qqtui.core.ttyclient import TtyConnection, check_attachable

    try:
        path = check_attachable(home, run, host)
        with TtyConnection.open(path, want="read", name="qqtui output pane", timeout=0.5) as conn:
            return (conn.cols, conn.rows) if conn.cols and conn.rows else None
    except (QqError, OSError):
        return None


# The app's own priority keys (Textual's ctrl+q quit, ctrl+p palette) would fire before
# the attached screen sees them: attached, they are the run's (nano, emacs, readline).
_APP_ACTIONS_ATTACHED_KEYS_BELONG_TO_THE_RUN = frozenset({"quit", "command_palette"})


def app_action_applies(app: App[Any], action: str) -> bool:
    """For an app's check_action: False for its priority keys while attached."""
    attached = isinstance(app.screen, AttachScreen)
    return not (attached and action in _APP_ACTIONS_ATTACHED_KEYS_BELONG_TO_THE_RUN)


def use_detach_key(app: App[Any], key: str) -> None:
    """Bind the detach key from config.toml (Textual's keymap, by the binding's id)."""
    if key != DEFAULT_DETACH_KEY:
        app.update_keymap({"attach.detach": textual_key(key)})


class AttachApp(App[int]):
    """`qqtui attach ID`: the attached view alone, without the rest of the app."""

    CSS_PATH = "../qqtui.tcss"
    TITLE = "qqtui attach"

    def __init__(self, screen: AttachScreen, *, detach_key: str = DEFAULT_DETACH_KEY) -> None:
        super().__init__()
        self._attach_screen = screen
        self._detach_key = detach_key

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return app_action_applies(self, action)

    def on_mount(self) -> None:
        use_detach_key(self, self._detach_key)
        self.push_screen(self._attach_screen, lambda _: self.exit(0))
