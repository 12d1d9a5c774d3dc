"""TextBox: a one-line Input whose Enter is the screen's `submit_box` action, handled
as the key arrives.

Input's own Enter posts Submitted, which the screen handles after the keys typed right
behind it have been handed out, to the box that still has the focus: "/ word Enter j"
then typed the "j" into the filter. A priority binding runs while the app dispatches
the key, so the screen can move the focus first. It is the box's binding, not the
screen's, so it exists only while the box has the focus and never hides the screen's
own Enter in the footer.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType
from textual.widgets import Input


class TextBox(Input):
    BINDINGS: list[BindingType] = [
        Binding(
            "enter",
            "screen.submit_box",
            "Apply",
            show=False,
            tooltip="Apply what the box holds and go back to the table",
            id="text_box.submit",
            priority=True,
        ),
    ]
