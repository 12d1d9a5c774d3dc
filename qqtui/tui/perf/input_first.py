"""The app's key presses and clicks go ahead of the poll thread.

The poll thread (tui/poller.py) reads the database and /proc and builds the table's rows
in Python, holding the interpreter for milliseconds at a time. A key press that came in
meanwhile waited for it. `App.post_message` is the first code of the app that sees an
input event, on the terminal driver's thread: it closes the InputGate there, and the
poll thread waits at its next checkpoint until the frame that answers the input is drawn.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.app import App
from textual.message import Message

from qqtui.tui.poller import InputGate

# Input that the poll thread steps aside for; not mouse moves, which come in streams and
# need no answer on screen.
INPUT_EVENTS = (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)


class InputFirstApp(App[Any]):
    """An App with an `input_gate` the poll thread checks (mix in before App)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.input_gate = InputGate()
        """Closed while the app handles input; the poll thread waits at its checkpoints."""
        super().__init__(*args, **kwargs)

    def post_message(self, message: Message) -> bool:
        if isinstance(message, INPUT_EVENTS):
            self.input_gate.close()  # at once, from the driver's thread
        return super().post_message(message)

    async def on_event(self, event: events.Event) -> None:
        await super().on_event(event)
        if isinstance(event, INPUT_EVENTS) and not self.input_gate.is_open:
            # After the frame that shows the answer (or at once if nothing changed).
            self.call_after_refresh(self.input_gate.open)
