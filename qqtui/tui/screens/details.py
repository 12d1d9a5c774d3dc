"""DetailsScreen: one run's command, directories, env, attempts, times and timeline."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label

from qqtui.tui.messages import RunEventsLoaded
from qqtui.tui.widgets.details import RunDetails

REFRESH_S = 1.0


class DetailsScreen(Screen[None]):
    """Refreshes itself while open: a poll that reschedules after it finishes."""

    BINDINGS: list[BindingType] = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the runs", id="details.back"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Label(f" Run {self.run_id}", id="details-title")
        with VerticalScroll(id="details-scroll"):
            yield RunDetails(id="details-body")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="details")
    def _load(self) -> None:
        snapshot = self.app.monitor.snapshot  # type: ignore[attr-defined]
        run = snapshot.run(self.run_id)
        events = snapshot.events(self.run_id) if run is not None else []
        self.post_message(RunEventsLoaded(run, events))

    @on(RunEventsLoaded)
    def _on_loaded(self, message: RunEventsLoaded) -> None:
        message.stop()
        app = self.app
        self.query_one(RunDetails).show(
            message.run,
            message.events,
            app.settings.home,  # type: ignore[attr-defined]
            app.clock(),  # type: ignore[attr-defined]
        )
        if message.run is not None and message.run.is_active:
            self._timer = self.set_timer(REFRESH_S, self._load)
