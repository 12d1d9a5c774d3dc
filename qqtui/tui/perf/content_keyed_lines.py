"""Styles a scrolled pane's lines once per line of content, not once per row it passes.

Textual's `StylesCache` keeps a widget's styled lines (background, padding, borders,
tint, the line filters' cache) by row, and a scroll clears them all. So following a run
that prints a line re-styled all 22 rows of the output pane for every line it printed:
~1.8 ms of a ~4.6 ms frame, five frames a second (bench/README.md, "App").

`ContentKeyedStylesCache` keeps the styled result of a content row by the identity of the
content strip the widget returned for it, and of a border or padding row by its row and
the title it shows, while every other input that styling reads is unchanged (checked once
per render). Strips are immutable and an entry holds its strip, so an identity match is
the same content: the answer is the one the stock method would give. Content rows pay
off only for a widget that hands back the same `Strip` object for a line it already
rendered, as `OutputView` does from its line cache; `use_for` opts a widget in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from textual._styles_cache import StylesCache

from qqtui.tui import perf

if TYPE_CHECKING:
    from rich.terminal_theme import TerminalTheme
    from textual.color import Color
    from textual.content import Content
    from textual.css.styles import StylesBase
    from textual.filter import LineFilter
    from textual.geometry import Region, Size, Spacing
    from textual.strip import Strip
    from textual.style import Style
    from textual.widget import Widget

    Label = tuple[Content, Color, Color, Style] | None

MAX_STYLED = 512
"""Styled lines kept per widget: a few screens of a scrolled pane, then start again."""


class ContentKeyedStylesCache(StylesCache):
    """A `StylesCache` that reuses a row's styled line for the same content."""

    def __init__(self) -> None:
        super().__init__()
        self._context: tuple[object, ...] | None = None
        self._content_rows: range | None = None
        self._styled: dict[int, tuple[Strip, Strip]] = {}
        self._edges: dict[int, tuple[Label, Strip]] = {}

    def render(
        self,
        styles: StylesBase,
        size: Size,
        base_background: Color,
        background: Color,
        render_content_line: Callable[[int], Strip],
        filters: Sequence[LineFilter],
        border_title: Label,
        border_subtitle: Label,
        content_size: Size | None = None,
        padding: Spacing | None = None,
        crop: Region | None = None,
        opacity: float = 1.0,
        ansi_theme: TerminalTheme = DEFAULT_TERMINAL_THEME,
        native_ansi: bool = False,
    ) -> list[Strip]:
        # Everything render_line styles with, besides the content and the titles.
        context = (
            size,
            content_size,
            padding if padding is not None else styles.padding,
            base_background,
            background,
            opacity,
            styles.border,
            styles.outline,
            styles.gutter,
            styles.tint,
            styles.text_opacity,
            styles.hatch if styles.has_rule("hatch") else None,
            id(ansi_theme),
            native_ansi,
        )
        if context != self._context or len(self._styled) >= MAX_STYLED:
            self._styled.clear()
            self._edges.clear()
            self._context = context
            self._content_rows = _content_rows(styles, size, content_size or size, context[2])
        return super().render(
            styles,
            size,
            base_background,
            background,
            render_content_line,
            filters,
            border_title,
            border_subtitle,
            content_size,
            padding,
            crop,
            opacity,
            ansi_theme,
            native_ansi,
        )

    def render_line(
        self,
        styles: StylesBase,
        y: int,
        size: Size,
        content_size: Size,
        padding: Spacing,
        base_background: Color,
        background: Color,
        render_content_line: Callable[[int], Strip],
        border_title: Label,
        border_subtitle: Label,
        opacity: float,
        ansi_theme: TerminalTheme,
        native_ansi: bool,
    ) -> Strip:
        def stock(content_line: Callable[[int], Strip]) -> Strip:
            return super(ContentKeyedStylesCache, self).render_line(
                styles,
                y,
                size,
                content_size,
                padding,
                base_background,
                background,
                content_line,
                border_title,
                border_subtitle,
                opacity,
                ansi_theme,
                native_ansi,
            )

        rows = self._content_rows
        if rows is None:
            return stock(render_content_line)
        if y not in rows:
            # A border or padding row: what it shows depends on the row and the title
            # (the top row's) or subtitle (the bottom row's), and on the context.
            label = border_title if y < rows.start else border_subtitle
            edge = self._edges.get(y)
            if edge is not None and edge[0] == label:
                return edge[1]
            strip = stock(render_content_line)
            self._edges[y] = (label, strip)
            return strip
        line = render_content_line(y - rows.start)
        key = id(line)
        hit = self._styled.get(key)
        if hit is not None and hit[0] is line:
            return hit[1]
        styled = stock(lambda _y: line)
        self._styled[key] = (line, styled)
        return styled


def _content_rows(
    styles: StylesBase, size: Size, content_size: Size, padding: Spacing
) -> range | None:
    """The rows the stock method draws from the content alone (its case C, where the
    content has a line), or None where rows are not that simple (an outline's top or
    bottom row, padding that is not the styles' own): then every row is left to it."""
    (outline_top, _), _, (outline_bottom, _), _ = styles.outline
    if outline_top or outline_bottom or padding != styles.padding:
        return None
    gutter = styles.gutter
    first = gutter.top
    stop = min(size.height - gutter.bottom, first + content_size.height)
    return range(first, max(first, stop))


def use_for(widget: Widget) -> None:
    """Give `widget` a content-keyed styles cache (before it first renders), when
    qqtui's replacements are installed (`qqtui.tui.perf.install`)."""
    if not perf.is_installed():
        return
    widget._styles_cache = ContentKeyedStylesCache()
