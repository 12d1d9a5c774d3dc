"""CountsHeader: the top line, run counts by status, any clock warning, and which
home/database is shown."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from qqtui.core.monitor import ClockSkew
from qqtui.core.records import Status
from qqtui.tui.widgets import formatting as fmt

# (count key, label, style) in the order a person scans them: what needs attention first.
_COUNTS = (
    ("running", "running", fmt.STATUS_STYLES[Status.RUNNING]),
    ("queued", "queued", ""),
    ("waiting", "waiting", fmt.WAITING_TEXT_STYLE),
    ("hung", "hung", "bold yellow"),
    ("failed", "failed", fmt.STATUS_STYLES[Status.FAILED]),
    ("timed_out", "timed out", fmt.STATUS_STYLES[Status.TIMED_OUT]),
    ("lost", "lost", fmt.STATUS_STYLES[Status.LOST]),
    ("cancelled", "cancelled", fmt.STATUS_STYLES[Status.CANCELLED]),
    ("succeeded", "done", fmt.STATUS_STYLES[Status.SUCCEEDED]),
)


# Shown only while there are some: "needs you" is a call to act, and a dim "0 waiting"
# would push the clock warning and the location off a narrow header.
_ONLY_WHEN_SOME = frozenset({"waiting"})


def clock_warning(skews: Sequence[ClockSkew]) -> str:
    """One line about the worst clock off the database server's ("" when none is)."""
    if not skews:
        return ""
    worst = skews[0]
    who = (
        f"worker {worst.worker_id} on {worst.host}"
        if worst.worker_id is not None
        else f"this host ({worst.host})"
    )
    way = "ahead of" if worst.skew_s > 0 else "behind"
    more = f" (+{len(skews) - 1} more)" if len(skews) > 1 else ""
    return f"⚠ clock: {who} is {abs(worst.skew_s):.0f} s {way} the database{more}"


def counts_text(counts: dict[str, int], location: str, warning: str = "") -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" qqtui ", style="bold reverse")
    text.append("  ")
    for key, label, style in _COUNTS:
        value = counts.get(key, 0)
        if not value and key in _ONLY_WHEN_SOME:
            continue
        text.append(f"{value} ", style=style if value else "dim")
        text.append(label, style="" if value else "dim")
        text.append("   ")
    # Before the location: a long home path is what the ellipsis may cut, not this.
    if warning:
        text.append(warning, style="bold yellow")
        text.append("   ")
    text.append("│ ", style="dim")
    text.append(location, style="dim")
    return text


class CountsHeader(Static):
    """One line: counts by status (running, queued, waiting, hung, failed, ...), a clock warning
    when a clock is off the database's, home and database."""

    def __init__(self, location: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.location = location
        self.counts: dict[str, int] = {}
        self.warning = ""

    def on_mount(self) -> None:
        self.update(counts_text(self.counts, self.location, self.warning))

    def show_counts(self, counts: dict[str, int]) -> None:
        if counts != self.counts:
            self.counts = dict(counts)
            self.update(counts_text(self.counts, self.location, self.warning))

    def show_warning(self, warning: str) -> None:
        if warning != self.warning:
            self.warning = warning
            self.update(counts_text(self.counts, self.location, self.warning))
