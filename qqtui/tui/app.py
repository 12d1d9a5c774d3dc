"""QqApp: the live view of one home and database; reads snapshots from core in thread
workers and sends intents to core. It never runs SQL and never signals a process."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.signal import Signal
from textual.worker import Worker, WorkerState

from qqtui.config import DEFAULT_DETACH_KEY, Settings, detach_key
from qqtui.core import workerctl
from qqtui.core.monitor import Alert, Monitor
from qqtui.core.records import QqError
from qqtui.core.snapshot import SnapshotError, database_error_text
from qqtui.core.store import Store
from qqtui.core.termtext import plain_field, plain_text
from qqtui.tui.commands import BindingCommands
from qqtui.tui.desktop_notify import osc_notification
from qqtui.tui.messages import (
    IntentDone,
    IntentOutcome,
    Outage,
    PollCrashed,
    PollFailed,
    RunsPolled,
)
from qqtui.tui.perf.crash_capture import CrashCaptureApp
from qqtui.tui.perf.input_first import InputFirstApp
from qqtui.tui.poller import PollThread
from qqtui.tui.screens.attach import app_action_applies, use_detach_key
from qqtui.tui.screens.help import HelpScreen
from qqtui.tui.screens.main import MainScreen
from qqtui.tui.screens.sessions import SessionsScreen
from qqtui.tui.widgets.run_table import RowBuilder

POLL_INTERVAL_S = 1.0
# While the database is unreachable, polls back off exponentially from the poll
# interval up to this, with jitter, so a restarted server is not met by every app at
# once and a person still sees it come back within a few seconds.
OUTAGE_RETRY_CAP_S = 5.0

_ALERT_TEXT = {
    "failed": ("failed", "error"),
    "timed_out": ("timed out", "error"),
    "lost": ("was lost (its worker died)", "error"),
    "hung": ("looks hung: no output or heartbeat", "warning"),
    "waiting": ("needs you", "warning"),
}


def error_text(error: BaseException | None) -> str:
    """One line for an error a thread met: ours as they are, the database's with its
    cause, anything else with its type (it is a bug, and the type helps the report)."""
    if isinstance(error, QqError):
        return str(error)
    if error is not None and (cause := database_error_text(error)) is not None:
        return f"database error: {cause}"
    return f"{type(error).__name__}: {error}"


class QqApp(InputFirstApp, CrashCaptureApp, App[int]):
    """Mission control for parallel runs."""

    CSS_PATH = "qqtui.tcss"
    TITLE = "qqtui"
    COMMANDS = App.COMMANDS | {BindingCommands}
    BINDINGS: list[BindingType] = [
        Binding("q", "quit", "Quit", tooltip="Quit (runs keep running)", id="app.quit"),
        Binding(
            "question_mark",
            "help",
            "Help",
            key_display="?",
            tooltip="Show every key",
            id="app.help",
        ),
        Binding(
            "s", "sessions", "Sessions", tooltip="Browse past sessions by agent", id="app.sessions"
        ),
    ]

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        start_worker: bool = True,
        scan_processes: bool = True,
        poll_interval: float = POLL_INTERVAL_S,
        bell: bool = False,
        notify: tuple[str, ...] = (),
        location: str | None = None,
        cwd: str | None = None,
        when_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._when_ready = when_ready
        self.settings = settings
        self.store = store
        self.clock = clock
        self.start_worker = start_worker
        self.poll_interval = poll_interval
        self.bell_on_alert = bell
        self.desktop_notify = notify
        """Escape sequences ("osc9", "osc777") sent when a run starts waiting."""
        self.location = location or f"{settings.home}  ·  {settings.db_url}"
        self.default_cwd = cwd or str(Path.cwd())
        self.monitor = Monitor(
            settings.home,
            settings.db_url,
            clock,
            scan_processes,
            host=store.host,
            checkpoint=self.input_gate.checkpoint,
        )
        self._rows_query = ""
        """The filter the shown rows match, as the main screen last asked (see show_rows)."""
        self._row_builder = RowBuilder()
        self._main = MainScreen()
        self.last_poll: RunsPolled | None = None
        self.polls: Signal[RunsPolled] = Signal(self, "polls")
        """Each poll as it is applied; screens subscribe (and read `last_poll` on mount)."""
        self.outages: Signal[Outage | None] = Signal(self, "outages")
        """The database is unreachable (again at each failed retry), or None: it is back."""
        self.intents_done: Signal[IntentOutcome] = Signal(self, "intents-done")
        """Each intent's outcome, after its toast (the main screen selects a new run)."""
        self._poller = PollThread(self._poll_once)
        self.outage: Outage | None = None
        """Set while polls cannot read the database; the main screen shows it."""
        self.detach_key = DEFAULT_DETACH_KEY
        """The key that leaves an attached run (`[tui] detach_key` in config.toml)."""

    @property
    def home(self) -> Path:
        return self.settings.home

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast goes through the sanitiser: names, reasons and errors in it are
        written by users and runs (screens' notify calls come here too)."""
        super().notify(
            plain_text(message),
            title=plain_field(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    def on_mount(self) -> None:
        try:
            self.detach_key = detach_key(self.settings.home)
        except ValueError as exc:
            self.notify(str(exc), title="config.toml", severity="error", markup=False)
        use_detach_key(self, self.detach_key)
        self.push_screen(self._main)
        # An auto-started worker stays while an app of this home is open (see workerctl).
        with contextlib.suppress(OSError):
            self._app_marker = workerctl.register_app(self.settings.home)
        if self.start_worker:
            self._ensure_worker()
        self._poller.start()
        self.poll_now()

    def on_unmount(self) -> None:
        self._poller.stop()
        if getattr(self, "_app_marker", None) is not None:
            workerctl.unregister_app(self._app_marker)

    def on_ready(self) -> None:
        """The first screen is drawn (`run_app` tunes the garbage collector here)."""
        if self._when_ready is not None:
            self._when_ready()

    # -- polling ------------------------------------------------------------------

    def show_rows(self, query: str) -> None:
        """Build the table's rows for runs matching `query` (the main screen's filter)
        from now on, starting with a poll at once."""
        self._rows_query = query
        self.poll_now()

    def poll_now(self) -> None:
        """Poll at once (after an intent, or a filter change) instead of at the next tick;
        a poll in progress is never cancelled (the monitor has already diffed its state,
        so dropping its result would drop its alerts): this one follows it."""
        self._poller.request(0.0)

    def _poll_once(self) -> None:
        """One poll, on the poll thread: read core, build the table rows, post them."""
        query = self._rows_query
        message: Message
        self.input_gate.start_poll()
        try:
            result = self.monitor.poll()
            rows = self._row_builder.build(
                result.runs,
                result.trees,
                result.cpu_history,
                result.now,
                query,
                result.progress,
                checkpoint=self.input_gate.checkpoint,
            )
            message = RunsPolled(result, rows, query)
        except SnapshotError as exc:
            # Not an error toast: a database that is down, restarting or locked is a
            # state to show and wait out (the banner), not a toast per poll.
            message = PollFailed(str(exc))
        except Exception as exc:  # a bug: say so, and keep polling
            message = PollCrashed(exc)
        if self._poller.stopped:
            return
        # The app's loop may close while a slow poll (an unreachable server) finishes.
        with contextlib.suppress(RuntimeError):
            self.post_message(message)

    def _schedule_poll(self, delay: float | None = None) -> None:
        self._poller.request(self.poll_interval if delay is None else delay)

    @on(PollFailed)
    def _on_poll_failed(self, message: PollFailed) -> None:
        before = self.outage
        attempts = before.attempts + 1 if before is not None else 1
        backoff = min(OUTAGE_RETRY_CAP_S, self.poll_interval * 2 ** min(attempts - 1, 16))
        # Full jitter on the upper half: apps watching one server spread their retries.
        delay = backoff * random.uniform(0.5, 1.0)
        self.outage = Outage(
            since=before.since if before is not None else self.clock(),
            attempts=attempts,
            cause=message.cause,
            retry_in_s=delay,
        )
        try:
            self.outages.publish(self.outage)
        finally:
            self._schedule_poll(delay)

    @on(PollCrashed)
    def _on_poll_crashed(self, message: PollCrashed) -> None:
        self.notify(
            error_text(message.error),
            title="Error (poll)",
            severity="error",
            timeout=8,
            markup=False,
        )
        self._schedule_poll()

    @on(RunsPolled)
    def _on_runs_polled(self, message: RunsPolled) -> None:
        self.last_poll = message
        if message.query != self._rows_query:
            self.poll_now()  # the filter changed while this poll ran
        try:
            if self.outage is not None:
                self.outage = None
                self.outages.publish(None)
                self.notify("Database reachable again", title="Database", timeout=4)
            for alert in message.result.alerts:
                self._notify_alert(alert)
            self.polls.publish(message)
        finally:
            self._schedule_poll()

    def _notify_alert(self, alert: Alert) -> None:
        text, severity = _ALERT_TEXT.get(alert.kind, (alert.kind, "warning"))
        run = alert.run
        name = run.name or " ".join(run.argv)
        if alert.kind == "waiting":
            reason = run.waiting_reason or "waiting for input"
            # The agent's words: notify() sanitises the toast, desktop_notify the OSC.
            self.notify(
                f"run {run.id} needs you: {reason}",
                title=name,
                severity="warning",
                timeout=10,
                markup=False,
            )
            if self.desktop_notify:
                self.write_desktop_notification(f"qqtui: run {run.id} needs you", reason)
        else:
            detail = f" ({run.reason})" if run.reason and alert.kind != "hung" else ""
            self.notify(
                f"{name} {text}{detail}",
                title=f"Run {run.id}",
                severity=severity,  # type: ignore[arg-type]
                timeout=8,
                markup=False,  # run names are user input
            )
        if self.bell_on_alert:
            self.bell()

    def write_desktop_notification(self, title: str, body: str) -> None:
        """OSC 9 / OSC 777 through the driver, as the bell is rung: a terminal that
        reads neither ignores the sequence (see desktop_notify.py)."""
        sequence = osc_notification(title, body, self.desktop_notify)
        if sequence and self._driver is not None:
            self._driver.write(sequence)
            self._driver.flush()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors surface: a toast, and polling goes on."""
        if event.state != WorkerState.ERROR:
            return
        self.notify(
            error_text(event.worker.error),
            title=f"Error ({event.worker.group})",
            severity="error",
            timeout=8,
            markup=False,
        )

    # -- the worker process -------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="ensure-worker")
    def _ensure_worker(self) -> None:
        pid = workerctl.ensure_worker(self.store, self.settings)
        if pid is not None:
            self.call_from_thread(
                self.notify,
                f"Started a background worker (pid {pid}); runs keep going after you quit.",
                title="Worker",
            )

    # -- intents ------------------------------------------------------------------

    def run_intent(self, intent: Callable[[], IntentOutcome]) -> None:
        """Run a core call (submit, cancel, kill, ...) in a thread; report through a toast."""
        self._intent_worker(intent)

    @work(thread=True, exit_on_error=False, group="intent")
    def _intent_worker(self, intent: Callable[[], IntentOutcome]) -> None:
        try:
            outcome = intent()
        except QqError as exc:
            outcome = IntentOutcome(str(exc), error=True)
        except Exception as exc:
            # The store's writes raise the driver's errors; a database that is down or
            # locked is something a user meets, so it gets one line, not a traceback.
            cause = database_error_text(exc)
            if cause is None:
                raise
            outcome = IntentOutcome(f"Not done, the database is unavailable: {cause}", error=True)
        self.post_message(IntentDone(outcome))

    @on(IntentDone)
    def _on_intent_done(self, message: IntentDone) -> None:
        outcome = message.outcome
        self.notify(
            outcome.message,
            severity="error" if outcome.error else "information",
            timeout=6 if outcome.error else 4,
            markup=False,  # names, commands and error text are user input
        )
        self.intents_done.publish(outcome)
        self.poll_now()

    # -- app-wide actions ---------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_sessions(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        if isinstance(self.screen, MainScreen):
            self.push_screen(SessionsScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Sessions and help are reachable from the main screen; modal dialogs keep
        # their keys to themselves anyway.
        if action == "sessions":
            return True if isinstance(self.screen, (MainScreen, HelpScreen)) else None
        return app_action_applies(self, action)


def make_app(settings: Settings, store: Store | None = None, **kwargs: Any) -> QqApp:
    """The one factory for the CLI and the tests: opens the store unless given one."""
    if store is None:
        from qqtui.core.sessions import ensure_home

        ensure_home(settings.home)
        store = Store.open(settings.db_url, actor="tui")
    return QqApp(settings, store, **kwargs)
