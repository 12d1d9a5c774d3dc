"""Repaints a scroll bar only when what it shows changes.

A scroll bar repaints whenever its position changes, and a followed output pane moves it
on every line the run prints. Over a log of thousands of lines the thumb moves by a
fraction of an eighth of a cell, so nearly every repaint drew the same bar: ~0.9 ms a
frame, five frames a second (bench/README.md, "App").

The bar's glyphs come from `ScrollBarRender.render_bar`, which is cheap. When they, the
bar's size, the region asked for and the app's line filters are what they were at the
last paint, the last paint's lines are the answer; otherwise the stock paint runs.
"""

from __future__ import annotations

from rich.color import Color
from textual.geometry import Region
from textual.scrollbar import ScrollBar, ScrollBarRender
from textual.strip import Strip
from textual.widget import Widget

_stock_render_lines = Widget.render_lines
# The colours `ScrollBarRender.__rich_console__` falls back to.
_DEFAULT_BACK = Color.parse("#555555")
_DEFAULT_BAR = Color.parse("bright_magenta")


def _render_lines(self: ScrollBar, crop: Region) -> list[Strip]:
    renderable = self.render()
    if type(renderable) is not ScrollBarRender or self.BLANK:
        return _stock_render_lines(self, crop)
    key = (crop, self.size, tuple(self.get_line_filters()), _glyphs(renderable, self))
    last: tuple[tuple[object, ...], list[Strip]] | None = getattr(self, "_qq_last_paint", None)
    if last is not None and last[0] == key:
        return last[1]
    strips = _stock_render_lines(self, crop)
    self._qq_last_paint = (key, strips)  # type: ignore[attr-defined]
    return strips


def _glyphs(renderable: ScrollBarRender, bar: ScrollBar) -> tuple[object, ...]:
    """What `ScrollBarRender.__rich_console__` yields for the bar's size, as a key."""
    width, height = bar.size
    style = renderable.style
    if isinstance(style, str):
        style = bar.app.console.get_style(style)
    segments = renderable.render_bar(
        size=height if renderable.vertical else width,
        window_size=renderable.window_size,
        virtual_size=renderable.virtual_size,
        position=renderable.position,
        vertical=renderable.vertical,
        thickness=width if renderable.vertical else height,
        back_color=style.bgcolor or _DEFAULT_BACK,
        bar_color=style.color or _DEFAULT_BAR,
    )
    return tuple(segments.segments)


def patches() -> list[tuple[type, str, object]]:
    """What `qqtui.tui.perf.install()` replaces: (class, attribute, replacement)."""
    return [(ScrollBar, "render_lines", _render_lines)]
