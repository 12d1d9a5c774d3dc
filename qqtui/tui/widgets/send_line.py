"""SendLine: a one-line box that types into a tty run's terminal without attaching,
as `qqtui send ID TEXT` does: Enter sends the text and an Enter (an empty line is the
Enter alone, for "Press Enter to continue"), escape closes it unsent.

The box belongs to the run it was opened for, not to whatever the table selects when
Enter is pressed: the answer typed for run 5's question must never reach run 6.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType
from textual.message import Message

from qqtui.tui.widgets.text_box import TextBox


class SendLine(TextBox):
    """The text to send to one run (`open_for`); posts Requested, or Closed."""

    BINDINGS: list[BindingType] = [
        Binding("escape", "close", "Close", show=False, id="send_line.close"),
    ]  # and TextBox's Enter: the screen sends the line (`submit`)

    class Requested(Message):
        """Send `data` to run `run_id`'s terminal."""

        def __init__(self, run_id: int, data: bytes) -> None:
            super().__init__()
            self.run_id = run_id
            self.data = data

    class Closed(Message):
        """The box closed, sent or not: the focus can go back."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id: int | None = None

    def open_for(self, run_id: int) -> None:
        self.run_id = run_id
        self.value = ""
        self.placeholder = (
            f"send to run {run_id}: enter sends the line and Enter (empty: Enter alone)"
            " · esc closes"
        )
        self.border_title = f"input to run {run_id}"
        self.add_class("-open")

    def action_close(self) -> None:
        self.run_id = None
        self.value = ""
        self.remove_class("-open")
        self.post_message(self.Closed())

    def submit(self) -> None:
        """Send the line (the screen's Enter, so the next key is the table's at once)."""
        if self.run_id is not None:
            self.post_message(self.Requested(self.run_id, self.value.encode() + b"\r"))
        self.action_close()
