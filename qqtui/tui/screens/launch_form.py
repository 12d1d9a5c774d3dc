"""LaunchForm: the `n` dialog. Validates every field where it is typed and returns a
RunSpec; the app submits it through core."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select

from qqtui.core.profiles import profile_for
from qqtui.core.records import QqError
from qqtui.core.runspec import DEFAULT_HUNG_AFTER_S, RunSpec
from qqtui.core.sessions import DEFAULT_AGENT, SessionInfo, list_sessions, validate_agent

NEW_SESSION = "__new__"


def parse_seconds(text: str, *, required: bool) -> float | None:
    """A positive number of seconds; '' is None unless required. Raises ValueError."""
    text = text.strip()
    if not text:
        if required:
            raise ValueError("required: a number of seconds")
        return None
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


class LaunchForm(ModalScreen[RunSpec | None]):
    """Command line (shlex), agent, name, working directory, timeout, hung threshold, session."""

    BINDINGS: list[BindingType] = [
        Binding(
            "escape", "cancel", "Cancel", tooltip="Close without launching", id="launch.cancel"
        ),
        Binding("ctrl+s", "submit", "Launch", tooltip="Queue the run", id="launch.submit"),
    ]

    def __init__(self, home: Path, cwd: str, session_id: str | None = None) -> None:
        super().__init__()
        self.home = home
        self.default_cwd = cwd
        self.preset_session = session_id

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-dialog", classes="dialog"):
            yield Label("Launch a run", classes="dialog-title")
            with VerticalScroll(id="launch-fields"):
                yield from self._field(
                    "Command",
                    "command",
                    'e.g. qq -m "fix the flaky test"  (parsed like a shell, never run by one)',
                )
                yield from self._field("Agent", "agent", DEFAULT_AGENT, value=DEFAULT_AGENT)
                yield from self._field("Name", "name", "optional: shown in the table")
                yield from self._field("Working dir", "cwd", "", value=self.default_cwd)
                yield from self._field("Timeout (s)", "timeout", "optional, e.g. 600")
                yield from self._field(
                    "Hung after (s)", "hung", "", value=f"{DEFAULT_HUNG_AFTER_S:g}"
                )
                yield Label("Session", classes="field-label")
                yield Select(
                    [("New session", NEW_SESSION)],
                    value=NEW_SESSION,
                    allow_blank=False,
                    id="launch-session",
                )
                yield Label("", id="launch-session-error", classes="field-error")
                yield Checkbox(
                    "Share the working dir with other runs (by default a run holds it alone)",
                    value=False,
                    id="launch-shared",
                )
                yield Checkbox(
                    "On a terminal of its own: attach, answer its prompts, see its screen",
                    value=self._profile_tty(DEFAULT_AGENT),
                    id="launch-tty",
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch (ctrl+s)", variant="success", id="launch-submit")
                yield Button("Cancel (esc)", id="launch-cancel")

    def _profile_tty(self, agent: str) -> bool:
        """Whether the agent's profile runs it on a terminal (a bad config: no)."""
        try:
            return profile_for(self.home, agent).tty
        except QqError:
            return False

    @on(Input.Changed, "#launch-agent")
    def _agent_changed(self, event: Input.Changed) -> None:
        # The box starts as the agent's profile says; the user may still flip it.
        agent = event.value.strip() or DEFAULT_AGENT
        self.query_one("#launch-tty", Checkbox).value = self._profile_tty(agent)

    def _field(self, label: str, key: str, placeholder: str, value: str = "") -> ComposeResult:
        yield Label(label, classes="field-label")
        yield Input(value=value, placeholder=placeholder, id=f"launch-{key}")
        yield Label("", id=f"launch-{key}-error", classes="field-error")

    def on_mount(self) -> None:
        box = self.query_one("#launch-command", Input)
        # Its first characters may be in it before its focus comes (see on_key): the
        # focus must not select them, or the next key would replace them.
        box.select_on_focus = False
        box.focus()

    def on_key(self, event: events.Key) -> None:
        """Keys typed right after `n` reach the form before its command box has the
        focus (the app hands a key to what is focused when the key arrives: nothing,
        while the form mounts, then its scrolling container), and came to the screen
        itself: they are the command's first characters. A key that bubbled up from
        another field (a checkbox, a select, a button) is left alone."""
        box = self.query_one("#launch-command", Input)
        field = isinstance(self.focused, (Input, Select, Checkbox, Button))
        if event.is_printable and event.character and (self.focused is box or not field):
            event.stop()
            event.prevent_default()
            self.set_focus(box)
            box.insert_text_at_cursor(event.character)
        self._load_sessions()

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch-sessions")
    def _load_sessions(self) -> None:
        found = list_sessions(self.home)
        self.app.call_from_thread(self._show_sessions, found)

    def _show_sessions(self, found: list[SessionInfo]) -> None:
        if not self.is_attached:
            return  # the form was closed while the sessions were read
        select: Select[str] = self.query_one("#launch-session", Select)
        options = [("New session", NEW_SESSION)]
        options += [(f"{s.agent} · {s.session_id}", s.session_id) for s in found[:200]]
        select.set_options(options)
        if self.preset_session and any(s.session_id == self.preset_session for s in found):
            select.value = self.preset_session
        else:
            select.value = NEW_SESSION

    def _error(self, key: str, message: str) -> None:
        label = self.query_one(f"#launch-{key}-error", Label)
        label.update(message)
        label.set_class(bool(message), "-shown")
        if key != "session":
            self.query_one(f"#launch-{key}", Input).set_class(bool(message), "-invalid")

    def validate_form(self) -> RunSpec | None:
        """Check every field, show each problem next to its field; None if any."""
        values = {
            key: self.query_one(f"#launch-{key}", Input).value
            for key in ("command", "agent", "name", "cwd", "timeout", "hung")
        }
        ok = True
        argv: list[str] = []
        try:
            argv = shlex.split(values["command"])
            if not argv:
                raise ValueError("give a command to run")
            self._error("command", "")
        except ValueError as exc:
            self._error("command", f"✘ {exc}")
            ok = False
        agent = values["agent"].strip() or DEFAULT_AGENT
        try:
            validate_agent(agent)
            self._error("agent", "")
        except QqError as exc:
            self._error("agent", f"✘ {exc}")
            ok = False
        cwd = os.path.expanduser(values["cwd"].strip() or self.default_cwd)
        if os.path.isdir(cwd):
            self._error("cwd", "")
        else:
            self._error("cwd", f"✘ {cwd} is not a directory")
            ok = False
        timeout: float | None = None
        try:
            timeout = parse_seconds(values["timeout"], required=False)
            self._error("timeout", "")
        except ValueError as exc:
            self._error("timeout", f"✘ {exc}")
            ok = False
        hung = DEFAULT_HUNG_AFTER_S
        try:
            hung = parse_seconds(values["hung"], required=True) or DEFAULT_HUNG_AFTER_S
            self._error("hung", "")
        except ValueError as exc:
            self._error("hung", f"✘ {exc}")
            ok = False
        session = self.query_one("#launch-session", Select).value
        session_id = None if session in (NEW_SESSION, Select.BLANK) else str(session)
        if not ok:
            return None
        return RunSpec(
            argv=tuple(argv),
            agent=agent,
            name=values["name"].strip(),
            cwd=os.path.abspath(cwd),
            timeout_s=timeout,
            hung_after_s=hung,
            session_id=session_id,
            shared_workspace=self.query_one("#launch-shared", Checkbox).value,
            tty=self.query_one("#launch-tty", Checkbox).value,
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#launch-submit")
    def action_submit(self) -> None:
        request = self.validate_form()
        if request is not None:
            self.dismiss(request)

    @on(Button.Pressed, "#launch-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
