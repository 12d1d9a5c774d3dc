"""A pane whose content grows updates its scroll bars, not the whole screen's layout.

Widget's `virtual_size` asks for a layout of the whole screen whenever it changes, which
re-arranges and re-renders every widget (20-100 ms here). The output pane gets a new
virtual size for every line the followed run prints, and the tables for every row that
comes or goes, yet their size comes from the stylesheet (`height: 1fr`), never from
their content: only their scroll bars need updating. A widget whose width or height is
`auto` (or unset) still gets its layout, unless it says its size never follows its
content (`SIZE_FROM_STYLESHEET`).
"""

from __future__ import annotations

from typing import ClassVar

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widget import Widget


class ScrollOnlyGrowth:
    """Mix in before the Textual widget class: `class T(ScrollOnlyGrowth, DataTable)`.

    A plain class, not a Widget: Textual takes CSS and component classes along the
    first DOMNode base only, which must stay the real widget's (reactives it takes
    from every class of the MRO)."""

    SIZE_FROM_STYLESHEET: ClassVar[bool] = False
    """True when the widget is never sized by its content, whatever its styles say."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self: Widget, old: Size, new: Size) -> None:
        if getattr(self, "SIZE_FROM_STYLESHEET", False):
            self._scroll_update(new)
            return
        styles = self.styles
        width_follows = old.width != new.width and (styles.width is None or styles.width.is_auto)
        height_follows = old.height != new.height and (
            styles.height is None or styles.height.is_auto
        )
        if width_follows or height_follows:
            self.refresh(layout=True)
        else:
            self._scroll_update(new)
