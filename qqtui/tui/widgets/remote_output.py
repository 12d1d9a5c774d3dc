"""RemoteOutputView: the output of a run on another host, as its worker keeps it in the
database (the last 64 KiB), with a line saying where the full log lives.

Shown instead of the OutputView when the run's log file is not readable here (no
shared home). The tail is untrusted output like any log: every line goes through
the same sanitizer, so only SGR colours reach the terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from qqtui.core import presentation
from qqtui.core.monitor import RemoteOutput
from qqtui.core.records import OutputTail
from qqtui.tui.output_text import sanitize_line


def where_line(remote: RemoteOutput) -> Text:
    """ "remote run: last 64 KiB shown (of 3 MB), full log on host H at PATH"."""
    tail = remote.tail
    shown = len(tail.tail)
    if tail.size > shown:
        amount = f"last {presentation.size(shown)} shown (of {presentation.size(tail.size)})"
    else:
        amount = f"all {presentation.size(tail.size)} shown"
    attempt = (
        f" · attempt {tail.attempt} (the run is on attempt {remote.run.attempt})"
        if tail.attempt != remote.run.attempt
        else ""
    )
    # Text, never markup: the host and path come from the database. It wraps: the
    # path is the point of the line, and session paths are long.
    return Text(f"remote run: {amount}, full log on host {tail.host} at {tail.log_path}{attempt}")


def tail_text(tail: OutputTail) -> Text:
    """The stored tail as inert lines: sanitized exactly like a local log."""
    data = tail.tail
    if tail.size > len(data):
        # The window starts mid-line, maybe mid-escape or mid-character: from the
        # first whole line on, as `tail -c` users would expect.
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1 :]
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        return Text("(no output yet)", style="dim italic")
    return Text("\n").join(sanitize_line(line) for line in data.split(b"\n"))


class RemoteOutputView(Vertical):
    """Where the full log is, then the stored tail; refreshed by `show` each poll."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._key: tuple[int, int, int, float] | None = None
        self.remote: RemoteOutput | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="remote-output-where", markup=False)
        yield RichLog(id="remote-output-log", wrap=False, markup=False, highlight=False)

    @property
    def log(self) -> RichLog:
        return self.query_one("#remote-output-log", RichLog)

    def show(self, remote: RemoteOutput) -> None:
        """Show `remote`; the text is rebuilt only when the stored tail changed."""
        self.remote = remote
        tail = remote.tail
        self.query_one("#remote-output-where", Static).update(where_line(remote))
        key = (tail.run_id, tail.attempt, tail.size, tail.updated_at)
        if key == self._key:
            return
        same_run = self._key is not None and self._key[0] == tail.run_id
        self._key = key
        log = self.log
        # Stay where the reader scrolled to, unless they were at the newest line.
        at_end = not same_run or log.scroll_y >= log.max_scroll_y
        scroll_y = log.scroll_y
        log.clear()
        # RichLog scrolls to the end itself, also when the write waits for the pane's
        # first layout (it is hidden until the first tail arrives).
        log.write(tail_text(tail), scroll_end=at_end)
        if not at_end:
            log.scroll_to(y=scroll_y, animate=False, immediate=True)

    def clear(self) -> None:
        self.remote = None
        self._key = None
        self.log.clear()
