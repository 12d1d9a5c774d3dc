"""MainScreen: counts, the runs table, the selected run's output and process tree,
and the keys that act on the selected run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static

from qqtui.core import intents
from qqtui.core.monitor import RemoteOutput
from qqtui.core.records import DEFAULT_GRACE_S, QqError, RunRecord, Status
from qqtui.core.runspec import DEFAULT_TTY_SIZE, RunSpec
from qqtui.core.snapshot import SnapshotError
from qqtui.core.termtext import plain_field
from qqtui.tui.messages import IntentOutcome, Outage, RemoteOutputLoaded, RunsPolled
from qqtui.tui.screens.attach import live_terminal_size, open_attach_screen
from qqtui.tui.screens.confirm import ConfirmScreen
from qqtui.tui.screens.details import DetailsScreen
from qqtui.tui.screens.launch_form import LaunchForm
from qqtui.tui.widgets.header import CountsHeader, clock_warning
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.pid_tree import PidTree
from qqtui.tui.widgets.remote_output import RemoteOutputView
from qqtui.tui.widgets.run_table import HOST_PREFIX, RunTable, split_host_filter
from qqtui.tui.widgets.send_line import SendLine
from qqtui.tui.widgets.terminal_view import TerminalView
from qqtui.tui.widgets.text_box import TextBox

if TYPE_CHECKING:
    from qqtui.tui.app import QqApp


# Actions that need a selected run, and which runs they apply to.
_RUN_ACTIONS = {
    "cancel": lambda run: run.is_active and not run.cancel_requested and not run.kill_requested,
    "kill": lambda run: run.is_active and not run.kill_requested,
    "retry": lambda run: run.status.is_final,
    "resume": lambda run: not run.is_active,
    "details": lambda run: True,
    "follow": lambda run: True,
    "search": lambda run: True,
    "attach": lambda run: True,  # a run without a terminal gets a toast saying why
    "send_line": lambda run: True,  # the same
}


def applicable_actions(run: RunRecord | None) -> frozenset[str]:
    """The run actions that apply to `run` (what the Footer greys out depends on)."""
    if run is None:
        return frozenset()
    return frozenset(action for action, applies in _RUN_ACTIONS.items() if applies(run))


def _record_size(run: RunRecord) -> tuple[int, int]:
    """A tty run's terminal size as its record says (as it started)."""
    return run.tty_cols or DEFAULT_TTY_SIZE[0], run.tty_rows or DEFAULT_TTY_SIZE[1]


class MainScreen(Screen[None]):
    """The runs and everything about the selected one."""

    BINDINGS: list[BindingType] = [
        Binding(
            "n",
            "launch",
            "Launch",
            tooltip="Launch a new run (a form)",
            id="main.launch",
            priority=True,  # as "/": the keys typed next are the command's (LaunchForm)
        ),
        Binding(
            "c",
            "cancel",
            "Cancel",
            tooltip="Cancel the selected run: TERM, then KILL after a grace period",
            id="main.cancel",
        ),
        Binding(
            "k",
            "kill",
            "Kill",
            tooltip="Kill the selected run's process group and tree now",
            id="main.kill",
        ),
        Binding(
            "r",
            "resume",
            "Resume",
            tooltip="Resume the selected run's session (a new run in it)",
            id="main.resume",
        ),
        Binding(
            "R",
            "retry",
            "Retry",
            key_display="R",
            tooltip="Queue the selected finished run again as a new attempt",
            id="main.retry",
        ),
        Binding(
            "enter",
            "details",
            "Details",
            tooltip="Command, directories, env, attempts, times and the events timeline",
            id="main.details",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            key_display="/",
            tooltip="Filter runs by text and status",
            id="main.filter",
            # Priority: handled by the app as the key arrives, so the focus is in the box
            # before the keys typed right after "/" are sent anywhere (see action_filter).
            priority=True,
        ),
        Binding(
            "H",
            "cycle_host",
            "Host",
            key_display="H",
            tooltip="Show one host's runs: all hosts, then each host in the store in turn",
            id="main.cycle_host",
        ),
        Binding(
            "f",
            "follow",
            "Follow",
            tooltip="Follow the newest output (toggle)",
            id="main.follow",
        ),
        Binding(
            "ctrl+f",
            "search",
            "Search",
            tooltip="Search the selected run's output (then n / N)",
            id="main.search",
            priority=True,  # as "/": the words typed next are the search's
        ),
        Binding(
            "a",
            "attach",
            "Attach",
            tooltip="The selected tty run's terminal, full screen (ctrl+] detaches)",
            id="main.attach",
        ),
        Binding(
            "i",
            "send_line",
            "Input",
            tooltip="Type a line into the selected tty run's terminal without attaching",
            id="main.send_line",
            priority=True,  # as "/": the answer typed right after "i" is the box's
        ),
        Binding(
            "escape",
            "close_filter",
            "Clear filter",
            show=False,
            tooltip="Clear the filter and go back to the table",
            id="main.close_filter",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._selected: int | None = None
        self._pending_select: int | None = None
        self._mounted = False
        self._covered = False  # a full screen is on top: nobody sees this one
        # The keys that applied to the selected run when the Footer was last built.
        self._shown_actions: frozenset[str] = frozenset()
        # (run id, version) whose stored output tail was last asked for.
        self._remote_asked: tuple[int, int] | None = None

    @property
    def qq(self) -> QqApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield CountsHeader(self.qq.location, id="counts")
        yield Static(id="db-banner", markup=False)
        yield TextBox(
            placeholder="filter: words, statuses (running hung failed done …), host:NAME"
            " · enter: apply · esc: close",
            id="filter",
        )
        yield RunTable(on_select=self._on_selection_changed, id="runs")
        with Horizontal(id="bottom"):
            yield OutputView(id="output")
            yield TerminalView(id="tty-output")
            yield RemoteOutputView(id="remote-output")
            yield PidTree(id="pids")
        yield SendLine(id="send-line")
        yield Footer(compact=True)  # every key fits in 160 columns

    def on_mount(self) -> None:
        self.query_one(RunTable).border_title = "runs"
        self.query_one(OutputView).border_title = "output"
        self.query_one(TerminalView).border_title = "terminal"
        self.query_one(PidTree).border_title = "processes"
        self.query_one(RunTable).focus()
        self._mounted = True
        # Immediate: a poll is shown in the same turn of the loop the app applies it in.
        self.qq.polls.subscribe(self, self._on_poll, immediate=True)
        self.qq.outages.subscribe(self, self._on_outage, immediate=True)
        self.qq.intents_done.subscribe(self, self._on_intent_done, immediate=True)
        if self.qq.last_poll is not None:
            self.show_poll(self.qq.last_poll)
        if self.qq.outage is not None:
            self.show_outage(self.qq.outage)

    def on_unmount(self) -> None:
        self._mounted = False

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        # Under a dialog this screen still shows (dimmed) and stays live. Under a full
        # screen nobody sees it: applying every poll to the table and following the
        # selected log would only take time from the screen on top, which for the
        # attached terminal is the time between a key and its echo.
        top = self.app.screen
        if top is self or isinstance(top, ModalScreen):
            return
        self._covered = True
        self.query_one(TerminalView).pause_watching_log()
        self.query_one(OutputView).pause_watching_log()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        if not self._covered:
            return
        self._covered = False
        self.query_one(TerminalView).resume_watching_log()
        self.query_one(OutputView).resume_watching_log()
        if self.ready and self.qq.last_poll is not None:
            self.show_poll(self.qq.last_poll)

    @property
    def ready(self) -> bool:
        """Whether polls and outages can be shown: composed, and the app not shutting down.

        Shutdown prunes this screen's children before the screen itself unmounts, and
        (under Pilot) runs beside the app's message loop, so a poll that lands then must
        not look for the table.
        """
        return self._mounted and self.app.is_running

    # -- data in ------------------------------------------------------------------

    @property
    def selected_run(self) -> RunRecord | None:
        poll = self.qq.last_poll
        if poll is None or self._selected is None:
            return None
        return poll.result.runs.get(self._selected)

    def _on_poll(self, message: RunsPolled) -> None:
        # A poll can land after this screen's children are pruned, at exit. Covered,
        # the last poll (the app keeps it) is shown on the way back.
        if self.ready and not self._covered:
            self.show_poll(message)

    def _on_outage(self, outage: Outage | None) -> None:
        if self.ready:
            self.show_outage(outage)

    def _on_intent_done(self, outcome: IntentOutcome) -> None:
        # A run just queued (launched, resumed, retried) is selected once a poll shows it.
        if outcome.run is not None and outcome.run.status is Status.QUEUED and self.ready:
            self.select_when_shown(outcome.run.id)

    def show_poll(self, message: RunsPolled) -> None:
        """Apply one poll: table rows, counts, the selected run's tree and titles."""
        table = self.query_one(RunTable)
        first_rows = not table.row_count and bool(message.rows)
        table.apply(message.rows)
        if first_rows and self._pending_select is None:
            # Open on what needs watching: the newest run that waits for its user, else
            # the newest running run (hung ones included), else the newest run, whatever
            # the sort put first.
            runs = message.result.runs
            live = [i for i in message.rows if i in runs and runs[i].status is Status.RUNNING]
            waiting = [i for i in live if runs[i].waiting]
            table.select_run(max(waiting or live or message.rows))
        header = self.query_one(CountsHeader)
        header.show_counts(message.result.counts)
        header.show_warning(clock_warning(message.result.clock_skews))
        if self._pending_select is not None and table.select_run(self._pending_select):
            self._pending_select = None
        self._show_selected(polled=True)
        self._show_table_title()

    def _show_table_title(self) -> None:
        table = self.query_one(RunTable)
        poll = self.qq.last_poll
        if poll is None:
            title = "runs"
        else:
            total = poll.result.counts.get("total", 0)
            title = f"runs  {len(poll.rows)} of {total}" if poll.query else f"runs  {total}"
            _, hosts = split_host_filter(poll.query)
            if hosts:
                title += f"  ·  host {' or '.join(hosts)}"
        if self.qq.outage is not None:
            seen = poll.result.now if poll is not None else self.qq.outage.since
            title += f"  ·  stale: as of {time.strftime('%H:%M:%S', time.localtime(seen))}"
        if table.border_title != title:
            table.border_title = title

    def show_outage(self, outage: Outage | None) -> None:
        """Show (or, with None, remove) the "database unreachable" banner; the runs stay
        on screen, dimmed, as they were last seen."""
        banner = self.query_one("#db-banner", Static)
        table = self.query_one(RunTable)
        if outage is None:
            banner.remove_class("-shown")
            table.remove_class("-stale")
        else:
            since = time.strftime("%H:%M:%S", time.localtime(outage.since))
            banner.update(
                f"⚠ database unreachable since {since}, retrying (attempt {outage.attempts}, "
                f"next in {outage.retry_in_s:.1f} s): {outage.cause}"
            )
            banner.add_class("-shown")
            table.add_class("-stale")
        self._show_table_title()

    def select_when_shown(self, run_id: int) -> None:
        """Select `run_id` as soon as it is in the table (a launch waits for the next poll)."""
        if not self.query_one(RunTable).select_run(run_id):
            self._pending_select = run_id

    def _on_selection_changed(self, run_id: int | None) -> None:
        """The table's cursor is on another run (called by the table as it moves)."""
        self._selected = run_id
        self._show_selected()

    def _show_selected(self, *, polled: bool = False) -> None:
        run = self.selected_run
        self._ask_remote_output(run, polled=polled)
        output = self.query_one(OutputView)
        pids = self.query_one(PidTree)
        poll = self.qq.last_poll
        # Only touch what changed: each assignment below repaints, and this runs every poll.
        if run is None:
            path = None
            output_title: str | Text = "output"
            tree = None
            pids_title = "processes"
        else:
            path = intents.output_log_path(self.qq.home, run)
            # Text, not str: a border title string is markup, and run names are user input.
            output_title = Text(f"output · run {run.id} · {plain_field(run.name)}")
            tree = poll.result.trees.get(run.id) if poll is not None else None
            count = tree.count if tree is not None else 0
            pids_title = f"processes · run {run.id} · {count}"
        terminal = self.query_one(TerminalView)
        tty = run is not None and run.tty
        if tty and run is not None:
            # A tty run's log is a terminal's bytes: its screen, not its lines.
            cols, rows = _record_size(run)
            terminal.follow_log(path, cols, rows, live_size=self._live_size_of(run))
            path = None
            if run.status is Status.RUNNING:
                subtitle = f"terminal {cols}x{rows} · a attaches · i types"
            else:
                subtitle = f"terminal {cols}x{rows} · {run.status.value}: its last screen"
            if terminal.border_subtitle != subtitle:
                terminal.border_subtitle = subtitle
        elif terminal.log_path is not None:
            terminal.follow_log(None, terminal.terminal.columns, terminal.terminal.lines)
        bottom = self.query_one("#bottom", Horizontal)
        if bottom.has_class("-tty") != tty:
            bottom.set_class(tty, "-tty")
            if (output.has_focus or terminal.has_focus) and not tty:
                output.focus()
        if output.path != path:
            output.set_path(path)
        remote = self.query_one(RemoteOutputView)
        for pane in (output, remote, terminal):
            if str(pane.border_title) != str(output_title):
                pane.border_title = output_title
        pids.show_tree(tree)
        if pids.border_title != pids_title:
            pids.border_title = pids_title
        # Refreshing the bindings rebuilds the Footer and lays out the whole screen: only
        # when the keys that apply change, not on every arrow key or poll (a running
        # run's record changes every poll; rebuilding the Footer each time was a quarter
        # of the app's CPU with 100 runs).
        actions = applicable_actions(run)
        if actions != self._shown_actions:
            self._shown_actions = actions
            self.refresh_bindings()

    # -- output of runs on other hosts ---------------------------------------------

    def _ask_remote_output(self, run: RunRecord | None, *, polled: bool) -> None:
        """Read a run's stored output tail when its log may be on another host: once per
        run version, and on every poll while it runs (its worker stores it each second)."""
        remote = self.query_one(RemoteOutputView)
        shown = remote.remote
        if shown is not None and (run is None or shown.run.id != run.id):
            self._show_remote(None)  # never another run's output, even for a moment
        if run is None or not run.host or run.host == self.qq.monitor.host:
            self._remote_asked = None
            return
        asked = (run.id, run.version)
        if asked != self._remote_asked or (polled and run.status is Status.RUNNING):
            self._remote_asked = asked
            self._load_remote_output(run)

    @work(thread=True, exclusive=True, exit_on_error=False, group="remote-output")
    def _load_remote_output(self, run: RunRecord) -> None:
        try:
            remote = self.qq.monitor.remote_output(run)
        except SnapshotError:
            # The poll that fails the same way shows the outage banner; keep what is
            # on screen and ask again after the next poll that works.
            self.post_message(RemoteOutputLoaded(run.id, None, failed=True))
            return
        self.post_message(RemoteOutputLoaded(run.id, remote))

    @on(RemoteOutputLoaded)
    def _on_remote_output_loaded(self, message: RemoteOutputLoaded) -> None:
        if message.failed:
            self._remote_asked = None
        elif message.run_id == self._selected:
            self._show_remote(message.remote)

    def _show_remote(self, remote: RemoteOutput | None) -> None:
        """Swap the output pane for the stored tail (a RemoteOutput), or back (None)."""
        bottom = self.query_one("#bottom", Horizontal)
        view = self.query_one(RemoteOutputView)
        was_remote = bottom.has_class("-remote")
        if remote is None:
            if view.remote is not None:
                view.clear()
        else:
            view.show(remote)
        if was_remote != (remote is not None):
            bottom.set_class(remote is not None, "-remote")
            self.refresh_bindings()  # follow and search apply to a local log only

    @on(OutputView.FollowChanged)
    def _on_follow_changed(self, event: OutputView.FollowChanged) -> None:
        event.output_view.border_subtitle = "following" if event.follow else "paused · f to follow"

    # -- which keys apply ---------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        applies = _RUN_ACTIONS.get(action)
        if applies is None:
            if action == "close_filter":
                return self.query_one("#filter", Input).has_focus or None
            return True
        if action in ("follow", "search") and self.query_one("#bottom").has_class("-remote"):
            return None
        run = self.selected_run
        return True if run is not None and applies(run) else None

    # -- actions ------------------------------------------------------------------

    def _skip_in_a_text_box(self) -> None:
        """The priority letters (n, /) act as the app hands them out; in a text box (the
        filter, the output search) they are text. (ctrl+f is no text, and Input has no
        binding for it: it opens the search from a box too, as it did before.)"""
        if isinstance(self.focused, Input):
            raise SkipAction()

    def action_launch(self) -> None:
        self._skip_in_a_text_box()
        self.app.push_screen(LaunchForm(self.qq.home, self.qq.default_cwd), self._launch)

    def _launch(self, request: RunSpec | None) -> None:
        if request is None:
            return
        app = self.qq
        self.notify(f"Queueing {' '.join(request.argv)[:60]} …", timeout=2, markup=False)

        def submit() -> IntentOutcome:
            run = intents.submit_run(app.store, app.home, request, actor="tui")
            return IntentOutcome(
                f"Queued run {run.id} ({plain_field(run.name)}) in session {run.session_id}", run
            )

        app.run_intent(submit)

    def action_cancel(self) -> None:
        run = self.selected_run
        if run is None:
            return
        how = (
            f"TERM to its process group now, KILL to the whole tree after {DEFAULT_GRACE_S:g}s."
            if run.status is Status.RUNNING
            else "It has not started; it will not run."
        )
        self._confirm(
            "Cancel run",
            f"Cancel run {run.id} ({plain_field(run.name)})?\n{how}",
            "Cancel run",
            lambda: self._stop(run, kill=False),
        )

    def action_kill(self) -> None:
        run = self.selected_run
        if run is None:
            return
        self._confirm(
            "Kill run",
            f"Kill run {run.id} ({plain_field(run.name)}) now?\nSIGKILL to its process group and every "
            "process of its tree, without a grace period.",
            "Kill",
            lambda: self._stop(run, kill=True),
        )

    def _confirm(self, title: str, question: str, label: str, then: object) -> None:
        def answered(yes: bool | None) -> None:
            if yes and callable(then):
                then()

        self.app.push_screen(ConfirmScreen(title, question, label), answered)

    def _stop(self, run: RunRecord, *, kill: bool) -> None:
        app = self.qq
        verb = "Killing" if kill else "Cancelling"
        self.notify(f"{verb} run {run.id} …", timeout=2, markup=False)

        def stop() -> IntentOutcome:
            if kill:
                after = intents.kill_run(app.store, run.id, actor="tui")
            else:
                after = intents.cancel_run(app.store, run.id, DEFAULT_GRACE_S, actor="tui")
            if after.status.is_final:
                return IntentOutcome(f"Run {run.id} {after.status.value} before it started", after)
            what = "kill" if kill else "cancel"
            return IntentOutcome(
                f"Run {run.id}: {what} requested; its worker is stopping it", after
            )

        app.run_intent(stop)

    def action_retry(self) -> None:
        run = self.selected_run
        if run is None:
            return
        app = self.qq

        def retry() -> IntentOutcome:
            after = intents.retry_run(app.store, run.id, actor="tui")
            return IntentOutcome(f"Run {run.id} queued again (attempt {after.attempt})", after)

        app.run_intent(retry)

    def action_resume(self) -> None:
        run = self.selected_run
        if run is None:
            return
        app = self.qq

        def resume() -> IntentOutcome:
            new = intents.resume_session(app.store, app.home, run.session_id, actor="tui")
            return IntentOutcome(f"Resumed session {run.session_id} as run {new.id}", new)

        app.run_intent(resume)

    def action_details(self) -> None:
        if self._selected is not None:
            self.app.push_screen(DetailsScreen(self._selected))

    @on(RunTable.RowSelected)
    def _on_row_selected(self, event: RunTable.RowSelected) -> None:
        # enter on the focused table arrives as RowSelected, not through our binding.
        event.stop()
        self.action_details()

    def _live_size_of(self, run: RunRecord) -> Callable[[], tuple[int, int] | None] | None:
        """For a running tty run, what asks its shim for the terminal's size now."""
        if run.status is not Status.RUNNING:
            return None
        home, host = self.qq.home, self.qq.monitor.host
        return lambda: live_terminal_size(home, run, host)

    def _output_pane(self) -> OutputView | TerminalView:
        """The pane that shows the selected run's output: its log, or its terminal."""
        if self.query_one("#bottom").has_class("-tty"):
            return self.query_one(TerminalView)
        return self.query_one(OutputView)

    def action_follow(self) -> None:
        self._output_pane().action_toggle_follow()

    def action_search(self) -> None:
        self._output_pane().action_open_search()

    def action_attach(self) -> None:
        """Open the selected tty run's terminal full screen (AttachScreen)."""
        run = self.selected_run
        if run is None:
            return
        app = self.qq
        try:
            screen = open_attach_screen(
                app.home, run, app.monitor.host, detach_key=app.detach_key, name="qqtui app"
            )
        except QqError as exc:
            self.notify(
                str(exc), title=f"Cannot attach to run {run.id}", severity="warning", markup=False
            )
            return
        app.push_screen(screen, lambda _: self._terminal_again())

    def action_send_line(self) -> None:
        """Open the input line for the selected run, if its terminal can take input (as
        the filter, the focus moves now, so the keys typed right after are the box's)."""
        self._skip_in_a_text_box()
        run = self.selected_run
        if run is None:
            return
        from qqtui.core.ttyclient import check_attachable

        try:
            check_attachable(self.qq.home, run, self.qq.monitor.host)
        except QqError as exc:
            self.notify(
                str(exc), title=f"Cannot send to run {run.id}", severity="warning", markup=False
            )
            return
        box = self.query_one(SendLine)
        box.open_for(run.id)
        self.set_focus(box)

    @on(SendLine.Requested)
    def _on_send_requested(self, event: SendLine.Requested) -> None:
        event.stop()
        app = self.qq
        poll = app.last_poll
        run = poll.result.runs.get(event.run_id) if poll is not None else None
        if run is None:
            self.notify(f"Run {event.run_id} is gone", severity="warning", markup=False)
            return
        data = event.data

        def send() -> IntentOutcome:
            from qqtui.core.ttyclient import send_to_run

            sent = send_to_run(app.home, run, data, this_host=app.monitor.host)
            return IntentOutcome(f"Sent {sent} bytes to run {run.id}")

        app.run_intent(send)

    @on(SendLine.Closed)
    def _on_send_line_closed(self, event: SendLine.Closed) -> None:
        event.stop()
        if self.focused is None or isinstance(self.focused, SendLine):
            self.set_focus(self.query_one(RunTable))

    def _terminal_again(self) -> None:
        """Back from the attached view: the run may have another size; draw it again."""
        run = self.selected_run
        terminal = self.query_one(TerminalView)
        if run is not None and run.tty and terminal.log_path is not None:
            cols, rows = _record_size(run)
            terminal.follow_log(
                terminal.log_path, cols, rows, live_size=self._live_size_of(run), reload=True
            )

    def action_filter(self) -> None:
        """Open the filter box and move the focus there at once.

        A fast typist (or a paste) sends "/" and the words in one burst. The app hands
        each key to the widget focused when the key arrives, so the focus must move
        while "/" is handled by the app (a priority binding, and `set_focus`, not
        `Widget.focus`, which waits for the queue): else "n" opened the launch form
        and "r" resumed a run.
        """
        self._skip_in_a_text_box()
        box = self.query_one("#filter", Input)
        box.add_class("-open")
        self.set_focus(box)

    def action_close_filter(self) -> None:
        """Escape drops the filter and shows every run again (as in k9s and lazygit);
        Enter in the box is the way to keep it."""
        box = self.query_one("#filter", Input)
        box.value = ""  # Input.Changed applies it, as if typed
        box.remove_class("-open")
        self.query_one(RunTable).focus()

    def action_cycle_host(self) -> None:
        """Filter by the next host with runs in the store: all -> h1 -> h2 -> all."""
        poll = self.qq.last_poll
        hosts = sorted({r.host for r in poll.result.runs.values() if r.host}) if poll else []
        box = self.query_one("#filter", Input)
        words, current = split_host_filter(box.value)
        if not hosts and not current:
            self.notify("No run has a host yet: hosts appear once runs start", timeout=4)
            return
        if len(current) == 1 and current[0] in hosts:
            at = hosts.index(current[0]) + 1
            following = hosts[at] if at < len(hosts) else None
        else:
            following = hosts[0] if hosts and not current else None
        if following is not None:
            words.append(HOST_PREFIX + following)
        box.value = " ".join(words)  # Input.Changed applies it, as if typed
        if box.value:
            box.add_class("-open")  # the filter line shows which host is on
        elif not box.has_focus:
            box.remove_class("-open")

    @on(Input.Changed, "#filter")
    def _on_filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        # The filter is the box's value (this screen's); the app builds rows to match.
        self.qq.show_rows(event.value.strip())

    def action_submit_box(self) -> None:
        """Enter in a TextBox. In the filter it keeps the filter (the box stays open
        while it holds one, so it shows); in the input line it sends the line. The
        focus is the table's at once; what the box does waits for the keys typed before Enter, which are still
        in the box's own queue (`call_later` runs after them)."""
        box = self.query_one("#filter", Input)
        if box.has_focus:

            def close_if_empty() -> None:
                if not box.value:
                    box.remove_class("-open")

            box.call_later(close_if_empty)
        else:
            line = self.query_one(SendLine)
            line.call_later(line.submit)
        self.set_focus(self.query_one(RunTable))

    # -- one process of the tree ----------------------------------------------------

    @on(PidTree.SignalRequested)
    def _on_signal_requested(self, event: PidTree.SignalRequested) -> None:
        event.stop()
        run = self.selected_run
        if run is None or run.id != event.run_id:
            return
        proc = event.proc
        name = signal.Signals(event.sig).name
        app = self.qq

        def send() -> IntentOutcome:
            intents.signal_run_process(app.home, run, proc.pid, proc.create_time, event.sig)
            return IntentOutcome(
                f"Sent {name} to process {proc.pid} ({plain_field(proc.name)}) of run {run.id}"
            )

        self._confirm(
            f"Send {name}",
            f"Send {name} to process {proc.pid} ({plain_field(proc.name)}) of run {run.id}?\n"
            f"{' '.join(proc.cmdline)[:200]}",
            f"Send {name}",
            lambda: app.run_intent(send),
        )
