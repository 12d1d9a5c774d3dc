"""ConfirmScreen: a yes/no question before anything that stops or signals a process."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Ask `question`; dismisses True on yes, False on no or escape."""

    BINDINGS: list[BindingType] = [
        Binding("y", "answer(True)", "Yes", tooltip="Confirm", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", tooltip="Do nothing", id="confirm.no"),
    ]

    def __init__(self, title: str, question: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            # The question names runs and commands: plain text, never markup.
            yield Static(self.question, markup=False, id="confirm-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="confirm-yes")
                yield Button("No (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
