"""CountsHeader: the top line, run counts by status and which home/database is shown."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from qqtui.core.records import Status
from qqtui.tui.widgets import formatting as fmt

# (count key, label, style) in the order a person scans them: what needs attention first.
_COUNTS = (
    ("running", "running", fmt.STATUS_STYLES[Status.RUNNING]),
    ("queued", "queued", ""),
    ("hung", "hung", "bold yellow"),
    ("failed", "failed", fmt.STATUS_STYLES[Status.FAILED]),
    ("timed_out", "timed out", fmt.STATUS_STYLES[Status.TIMED_OUT]),
    ("lost", "lost", fmt.STATUS_STYLES[Status.LOST]),
    ("cancelled", "cancelled", fmt.STATUS_STYLES[Status.CANCELLED]),
    ("succeeded", "done", fmt.STATUS_STYLES[Status.SUCCEEDED]),
)


def counts_text(counts: dict[str, int], location: str, worker_note: str = "") -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" qqtui ", style="bold reverse")
    text.append("  ")
    for key, label, style in _COUNTS:
        value = counts.get(key, 0)
        text.append(f"{value} ", style=style if value else "dim")
        text.append(label, style="" if value else "dim")
        text.append("   ")
    text.append("│ ", style="dim")
    text.append(location, style="dim")
    if worker_note:
        text.append(f"  {worker_note}", style="yellow")
    return text


class CountsHeader(Static):
    """One line: counts by status (running, queued, hung, failed, ...), home and database."""

    def __init__(self, location: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.location = location
        self.counts: dict[str, int] = {}
        self.worker_note = ""

    def on_mount(self) -> None:
        self.update(counts_text(self.counts, self.location, self.worker_note))

    def show_counts(self, counts: dict[str, int]) -> None:
        if counts != self.counts:
            self.counts = dict(counts)
            self.update(counts_text(self.counts, self.location, self.worker_note))

    def show_worker_note(self, note: str) -> None:
        if note != self.worker_note:
            self.worker_note = note
            self.update(counts_text(self.counts, self.location, self.worker_note))
