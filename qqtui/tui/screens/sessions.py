"""SessionsScreen (every session under home, by agent, newest first) and SessionScreen
(one session's output logs and its history.json as a conversation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from qqtui.core import intents, presentation
from qqtui.core.profiles import migrate_all_legacy_histories
from qqtui.core.records import Status
from qqtui.core.sessions import (
    HISTORY_FILE,
    OUTPUT_LOG,
    SessionInfo,
    list_sessions,
    read_history,
    run_logs,
)
from qqtui.core.termtext import plain_text
from qqtui.tui.messages import IntentOutcome
from qqtui.tui.widgets import formatting as fmt
from qqtui.tui.widgets.output_view import OutputView

if TYPE_CHECKING:
    from qqtui.tui.app import QqApp

REFRESH_S = 2.0
ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


@dataclass(frozen=True, slots=True)
class SessionRow:
    info: SessionInfo
    runs: int
    last_status: str


def _resume(app: QqApp, session_id: str) -> None:
    def resume() -> IntentOutcome:
        new = intents.resume_session(app.store, app.home, session_id, actor="tui")
        return IntentOutcome(f"Resumed session {session_id} as run {new.id}", new)

    app.run_intent(resume)


class SessionTable(DataTable[Any]):
    """The sessions; enter opens one (shown in the Footer as "Open")."""

    BINDINGS: list[BindingType] = [
        Binding(
            "enter",
            "select_cursor",
            "Open",
            tooltip="Output logs and history of the session",
            id="sessions.open_row",
        ),
    ]


class SessionsScreen(Screen[None]):
    """Sessions grouped by agent (agents A-Z), newest first within each."""

    BINDINGS: list[BindingType] = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the runs", id="sessions.back"),
        Binding(
            "enter",
            "open",
            "Open",
            tooltip="Output logs and history of the session",
            id="sessions.open",
        ),
        Binding(
            "r",
            "resume",
            "Resume",
            tooltip="Resume the session (a new run in it)",
            id="sessions.resume",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[SessionRow] = []

    @property
    def qq(self) -> QqApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label(" Sessions", id="sessions-title")
        yield SessionTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        for key, label, width in (
            ("agent", "Agent", 14),
            ("session", "Session", 26),
            ("runs", "Runs", 5),
            ("status", "Last status", 13),
            ("size", "Size", 8),
            ("age", "Age", 6),
        ):
            table.add_column(label, key=key, width=width)
        table.border_title = "sessions"
        table.focus()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def _load(self) -> None:
        # Seed 000's single-file layout (<home>/<agent>/history.json) becomes a session
        # the first time anyone looks; a cheap marker check afterwards.
        migrate_all_legacy_histories(self.qq.home)
        found = list_sessions(self.qq.home)
        summaries = self.qq.monitor.snapshot.session_summaries()
        rows = []
        for info in found:
            count, last, _ = summaries.get(info.session_id, (0, "", 0))
            rows.append(SessionRow(info, count, last))
        # Grouped by agent, newest first inside a group (ids start with their time).
        rows.sort(key=lambda r: r.info.session_id, reverse=True)
        rows.sort(key=lambda r: r.info.agent)
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[SessionRow]) -> None:
        if not self.is_attached:
            return  # closed while the read was in flight
        self.rows = rows
        table = self.query_one("#sessions", DataTable)
        now = self.qq.clock()
        with self.app.batch_update():
            table.clear()
            previous_agent = None
            for row in rows:
                agent = row.info.agent if row.info.agent != previous_agent else ""
                previous_agent = row.info.agent
                status_cell: Text | str = "-"
                if row.last_status:
                    status = Status(row.last_status)
                    status_cell = fmt.status_text(status)
                table.add_row(
                    Text(agent, style="bold"),
                    row.info.session_id,
                    str(row.runs),
                    status_cell,
                    presentation.size(row.info.size_bytes),
                    presentation.age(now - row.info.created_at) if row.info.created_at else "-",
                    key=f"{row.info.agent}/{row.info.session_id}",
                )
        table.border_title = f"sessions  {len(rows)}"

    def _selected(self) -> SessionRow | None:
        table = self.query_one("#sessions", DataTable)
        if not self.rows or not table.row_count:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open", "resume"):
            return True if self._selected() is not None else None
        return True

    @on(DataTable.RowSelected, "#sessions")
    def action_open(self) -> None:
        row = self._selected()
        if row is not None:
            self.app.push_screen(SessionScreen(row.info))

    def action_resume(self) -> None:
        row = self._selected()
        if row is not None:
            _resume(self.qq, row.info.session_id)


# --- one session -----------------------------------------------------------------------


def render_history(path: Path) -> RenderableType:
    """history.json as a conversation, raw JSON, or a clear error: never raises."""
    history = read_history(path)
    if history.problem is not None:
        return Text(f"✘ {plain_text(history.problem)}", style="bold red")
    if history.messages is None:
        if history.raw is None:
            return Text(f"No {HISTORY_FILE} in this session.", style="dim italic")
        return Text(plain_text(history.raw[:200_000]))
    blocks: list[RenderableType] = []
    for role, text in history.messages:
        blocks.append(Text(plain_text(role), style=ROLE_STYLES.get(role, "bold")))
        blocks.append(Text(plain_text(text[:50_000]) + "\n"))
    return Group(*blocks)


class SessionScreen(Screen[None]):
    """Output logs of the session's runs (pick one on the left) and its history."""

    BINDINGS: list[BindingType] = [
        Binding(
            "escape", "app.pop_screen", "Back", tooltip="Back to the sessions", id="session.back"
        ),
        Binding(
            "r",
            "resume",
            "Resume",
            tooltip="Resume this session (a new run in it)",
            id="session.resume",
        ),
    ]

    def __init__(self, info: SessionInfo) -> None:
        super().__init__()
        self.info = info
        self._logs: list[tuple[int, Path]] | None = None

    @property
    def qq(self) -> QqApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label(f" Session {self.info.session_id} · {self.info.agent}", id="session-title")
        with Horizontal(id="session-body"):
            with Vertical(id="session-left"):
                yield OptionList(id="session-runs")
                yield OutputView(id="session-output")
            with VerticalScroll(id="session-history"):
                yield Static(Text("loading…", style="dim"), id="session-history-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#session-runs", OptionList).border_title = "runs"
        self.query_one("#session-output", OutputView).border_title = "output"
        self.query_one("#session-history", VerticalScroll).border_title = HISTORY_FILE
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="session")
    def _load(self) -> None:
        logs = run_logs(self.info.path)
        history = render_history(self.info.path / HISTORY_FILE)
        self.app.call_from_thread(self._show, logs, history)

    def _show(self, logs: list[tuple[int, Path]], history: RenderableType) -> None:
        if not self.is_attached:
            return  # closed while the read was in flight
        self.query_one("#session-history-body", Static).update(history)
        if logs != self._logs:
            # A resumed or new run adds a log: rebuild the list, keep the one shown.
            self._logs = logs
            runs = self.query_one("#session-runs", OptionList)
            shown = self.query_one("#session-output", OutputView).path
            runs.clear_options()
            for run_id, path in logs:
                runs.add_option(Option(f"run {run_id}  ·  {OUTPUT_LOG}", id=str(path)))
            if not logs:
                runs.add_option(Option("no runs yet", disabled=True))
            else:
                paths = [path for _, path in logs]
                runs.highlighted = paths.index(shown) if shown in paths else 0
        # The agent may still be writing its history: read it again shortly.
        self.set_timer(REFRESH_S, self._load)

    @on(OptionList.OptionHighlighted, "#session-runs")
    def _on_run_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.query_one("#session-output", OutputView).set_path(Path(event.option.id))

    def action_resume(self) -> None:
        _resume(self.qq, self.info.session_id)
