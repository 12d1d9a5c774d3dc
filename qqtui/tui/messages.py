"""App-wide messages: results of the thread workers, posted back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from qqtui.core.monitor import PollResult, RemoteOutput
from qqtui.core.records import EventRecord, RunRecord
from qqtui.tui.widgets.run_table import RowData


class RunsPolled(Message):
    """One poll of the store and the process table, with table rows ready to diff."""

    def __init__(self, result: PollResult, rows: dict[int, RowData], query: str) -> None:
        super().__init__()
        self.result = result
        self.rows = rows
        self.query = query


class PollFailed(Message):
    """A poll could not read the store: the database is unreachable, locked or unreadable."""

    def __init__(self, cause: str) -> None:
        super().__init__()
        self.cause = cause


class PollCrashed(Message):
    """A poll failed on something other than the database: a bug, shown as a toast."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


@dataclass(frozen=True, slots=True)
class Outage:
    """The database has been unreachable since `since` (wall clock); polls keep trying."""

    since: float
    attempts: int
    cause: str
    retry_in_s: float


class RemoteOutputLoaded(Message):
    """The stored output tail of a run on another host (None: read its log file here;
    `failed`: the database could not be read, ask again later)."""

    def __init__(self, run_id: int, remote: RemoteOutput | None, *, failed: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.remote = remote
        self.failed = failed


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
