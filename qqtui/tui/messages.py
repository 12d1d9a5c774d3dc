"""App-wide messages: results of the thread workers, posted back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from qqtui.core.monitor import PollResult
from qqtui.core.records import EventRecord, RunRecord
from qqtui.tui.widgets.run_table import RowData


class RunsPolled(Message):
    """One poll of the store and the process table, with table rows ready to diff."""

    def __init__(self, result: PollResult, rows: dict[int, RowData], query: str) -> None:
        super().__init__()
        self.result = result
        self.rows = rows
        self.query = query


class RunEventsLoaded(Message):
    """The events timeline of one run, for the details view."""

    def __init__(self, run: RunRecord | None, events: list[EventRecord]) -> None:
        super().__init__()
        self.run = run
        self.events = events


@dataclass(frozen=True, slots=True)
class IntentOutcome:
    """What a user intent did: a line for the toast, and the run it touched if any."""

    message: str
    run: RunRecord | None = None
    error: bool = False


class IntentDone(Message):
    """A launch, cancel, kill, retry, resume or signal finished (or failed cleanly)."""

    def __init__(self, outcome: IntentOutcome) -> None:
        super().__init__()
        self.outcome = outcome
