"""LiveTable: a DataTable for tables that change every poll, repainting only what changed.

Textual's DataTable keys its rendered cells on a counter that every `update_cell`
bumps, so changing one cell re-renders every visible cell. With 100 running runs the
runs table changes every second (runtimes, CPU), and re-rendering all its ~200 visible
cells cost 40-100 ms of the event loop per poll: the app's main CPU cost and what kept
key presses waiting. Here a rendered cell is reused as long as the cell's value is the
same object (the tables replace values, never mutate them) and nothing else that goes
into its rendering (row position, style, cursor, hover, width, focus) changed.

A whole rendered line is reused the same way: while none of a row's values changed
and neither did what else goes into its line (cursor or hover on the row, widths,
scroll, styles), the row is not rendered again. DataTable keys its lines on the cursor's
position too, so a key press that moved the cursor re-rendered every visible row, and a
poll that changed a cell anywhere did the same.

A cell that is a plain one-line `Text` (one style, no markup spans) and fits its column
is turned into segments here, not through Rich's padding and wrapping: the same
segments for an eighth of the cost (22 against 181 µs a cell here). Everything else
goes through DataTable.

Also, a new row count is not a reason for a layout of the whole screen (see
scroll_only_growth).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

from qqtui.tui.perf.scroll_only_growth import ScrollOnlyGrowth

_CELL_CACHE_SIZE = 10_000  # as DataTable's own cell cache
_DEAD_CACHE_SIZE = 256  # rows (or cells) of a few screens
_LINE_CACHE_SIZE = 1_000  # rendered lines: a few screens, with and without the cursor
_LEFT_ALIGNED = (None, "default", "left")


class _Frame(NamedTuple):
    """What every line of one frame of a LiveTable shares."""

    base_style: Style
    x1: int
    x2: int
    width: int
    widths: tuple[int, ...]
    labels: tuple[object, ...]
    cursor_row: int
    hover_row: int
    fixed_height: int
    scroll_y: int
    looks: tuple[object, ...]
    """Everything a line's rendering depends on besides its row, values, cursor and hover."""


class _Line(NamedTuple):
    """A rendered line and what it was rendered from."""

    looks: tuple[object, ...]
    row_index: int
    cursor: bool
    hover: bool
    values: tuple[object, ...]
    strip: Strip


def _replace(cache: LRUCache[Any, Any], key: object, value: object) -> None:
    """Store `value` under `key`, replacing what is there: LRUCache.set keeps an
    existing entry, so a cell whose value changed would miss its cache forever."""
    cache.discard(key)
    cache.set(key, value)


class LiveTable(ScrollOnlyGrowth, DataTable[Any]):
    """A DataTable whose cells are replaced (never mutated in place) as data changes."""

    def __init__(self, **kwargs: Any) -> None:
        # Before DataTable's __init__, which may already clear caches.
        self._live_cells: LRUCache[tuple[object, ...], tuple[object, list[list[Segment]]]] = (
            LRUCache(_CELL_CACHE_SIZE)
        )
        self._row_styles: dict[tuple[object, ...], Style] = {}
        self._live_lines: LRUCache[tuple[RowKey, int], _Line] = LRUCache(_LINE_CACHE_SIZE)
        # Set while a frame is drawn: the widget's style (looked up once per frame, as it
        # walks the DOM) and what its lines share.
        self._frame_style: Style | None = None
        self._frame: _Frame | None = None
        super().__init__(**kwargs)
        # DataTable's own caches are keyed on its update counter, so in a table updated
        # every poll their old entries are dead, yet 10,000 cells and 1,000 rows and
        # lines of them stay alive: long-lived garbage that made the interpreter's full
        # collections (100 ms with every thread stopped) frequent. A few screens' worth
        # is all they are still hit for; cells are cached above.
        self._cell_render_cache = LRUCache(_DEAD_CACHE_SIZE)
        self._row_render_cache = LRUCache(_DEAD_CACHE_SIZE)
        self._row_renderable_cache = LRUCache(_DEAD_CACHE_SIZE)
        self._line_cache = LRUCache(_DEAD_CACHE_SIZE)

    def replace_cells(self, cells: Iterable[tuple[str, str, object]]) -> None:
        """Put new values in existing cells, given as (row key, column key, value), with
        one refresh for all: DataTable's `update_cell` refreshes the widget per cell,
        and with 100 running runs a poll replaces ~400 cells (5 ms of the UI thread,
        during which a key press waited)."""
        data = self._data
        rows, columns = self._row_locations, self._column_locations
        changed = False
        for row, column, value in cells:
            row_key, column_key = RowKey(row), ColumnKey(column)
            if row_key not in rows or column_key not in columns:
                raise CellDoesNotExist(
                    f"No cell exists for row_key={row!r}, column_key={column!r}."
                )
            data[row_key][column_key] = value
            changed = True
        if changed:
            self._update_count += 1  # what DataTable's own caches are keyed on
            self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of this frame shares is looked up once (the widget's style
        # walks the DOM; widths and cursor are reactive reads): see `_frame_for`. It is
        # built at the first line, once DataTable's render_lines has read the pseudo
        # classes (focus, hover) that go into it.
        self._frame_style = self.rich_style
        self._frame = None
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None
            self._frame = None

    def render_line(self, y: int) -> Strip:
        base_style = self._frame_style
        if base_style is None:  # called on its own, not for a frame
            return super().render_line(y)
        # DataTable's render_line, with the style looked up once per frame.
        frame = self._frame
        if frame is None or frame.base_style is not base_style:
            scroll_x = self.scroll_offset.x
            frame = self._frame = self._frame_for(base_style, scroll_x, scroll_x + self.size.width)
        if y >= frame.fixed_height:
            y += frame.scroll_y
        return self._render_line(y, frame.x1, frame.x2, base_style)

    def _frame_for(self, base_style: Style, x1: int, x2: int) -> _Frame:
        columns = list(self.columns.values())  # in display order: columns never move
        widths = tuple(column.get_render_width(self) for column in columns)
        width = self.size.width
        fixed_height = sum(
            self.get_row_height(self._row_locations.get_key(index))
            for index in range(self.fixed_rows)
        )
        if self.show_header:
            fixed_height += self.header_height
        return _Frame(
            base_style=base_style,
            x1=x1,
            x2=x2,
            width=width,
            widths=widths,
            labels=tuple(column.label for column in columns),
            cursor_row=self.cursor_coordinate.row,
            hover_row=self.hover_coordinate.row,
            fixed_height=fixed_height,
            scroll_y=self.scroll_offset.y,
            looks=(
                base_style,
                self.show_cursor,
                self._show_hover_cursor,
                self._pseudo_class_state,
                self.zebra_stripes,
                self.fixed_rows,
                widths,
                width,
                x1,
                x2,
            ),
        )

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        if (
            self.cursor_type != "row"
            or self.fixed_columns
            or (self._labelled_row_exists and self.show_row_labels)
        ):
            return super()._render_line(y, x1, x2, base_style)
        frame = self._frame
        if frame is None or frame.base_style is not base_style or (frame.x1, frame.x2) != (x1, x2):
            frame = self._frame_for(base_style, x1, x2)
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return Strip.blank(frame.width, base_style)
        if row_key is self._header_row_key:
            row_index = -1
            values = frame.labels
        else:
            row_index = self._row_locations.get(row_key)
            # A row's cells, in column order: DataTable keeps each row's dict in the
            # order of its columns (new columns are appended to every row).
            values = tuple(self._data[row_key].values())
        cursor = row_index == frame.cursor_row
        hover = row_index == frame.hover_row
        key = (row_key, line_no)
        cached = self._live_lines.get(key)
        if (
            cached is not None
            and cached.row_index == row_index
            and cached.cursor is cursor
            and cached.hover is hover
            and cached.looks == frame.looks
            and len(cached.values) == len(values)
            and all(old is new for old, new in zip(cached.values, values, strict=True))
        ):
            return cached.strip
        strip = self._render_row_line(row_index, line_no, frame, cursor, hover)
        _replace(self._live_lines, key, _Line(frame.looks, row_index, cursor, hover, values, strip))
        return strip

    def _render_row_line(
        self, row_index: int, line_no: int, frame: _Frame, cursor: bool, hover: bool
    ) -> Strip:
        """One line of a row, as DataTable's `_render_line_in_row` and `_render_line`
        draw it for a row cursor without fixed columns or row labels. The cells come
        simplified (adjacent segments of one style joined) and no two cells' segments
        can be joined (each carries its own column in its style's metadata), so the
        line needs no simplifying of its own, nor any cropping when it fits."""
        base_style = frame.base_style
        row_style = self._get_row_style(row_index, base_style)
        segments: list[Segment] = []
        for column_index, column_width in enumerate(frame.widths):
            segments.extend(
                self._render_cell(
                    row_index, column_index, row_style, column_width, cursor=cursor, hover=hover
                )[line_no]
            )
        extend_style, _ = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            False,
            False,
        )
        extend_style = row_style + extend_style
        extend_style += Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        width = frame.width
        cells_width = sum(frame.widths)
        if cells_width < width:
            segments.append(Segment(" " * (width - cells_width), extend_style))
        else:
            segments.append(Segment("", extend_style))  # as DataTable's (an empty one)
        line = Strip(segments, max(width, cells_width))
        if frame.x1 > 0 or frame.x2 < line.cell_length:
            line = line.crop(frame.x1, frame.x2)
        if line.cell_length != width:
            line = line.adjust_cell_length(width, base_style)
        return line

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        if column_index < 0 or row_index < -1:  # row labels (unused here)
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        column_key = self._column_locations.get_key(column_index)
        if row_index == -1:  # the header: a column's label is replaced when it changes
            row_key = self._header_row_key
            value: object = self.columns[column_key].label
        else:
            row_key = self._row_locations.get_key(row_index)
            value = self._data[row_key][column_key]
        # Everything DataTable's own key holds except its update counter, plus what the
        # counter stood for: the row's position (rows move when sorted; its index is in
        # the rendering's mouse metadata) and the column's width.
        key = (
            row_key,
            column_key,
            row_index,
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        cached = self._live_cells.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        lines = self._render_fresh_cell(
            row_index, column_index, value, base_style, width, cursor, hover
        )
        _replace(self._live_cells, key, (value, lines))
        return lines

    def _render_fresh_cell(
        self,
        row_index: int,
        column_index: int,
        value: object,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> list[list[Segment]]:
        """A cell rendered anew: the same segments DataTable's `_render_cell` makes (Rich's
        padding around the text, then the cell's component styles), made directly when
        the cell is one plain line that fits."""
        pad = self.cell_padding
        room = width - 2 * pad
        if row_index == -1:
            height = self.header_height
        else:
            height = self.rows[self._row_locations.get_key(row_index)].height
        # `Text.plain` joins the text's parts on each read: read it, and measure it, once.
        plain = value.plain if type(value) is Text else ""
        length = cell_len(plain)
        if (
            type(value) is not Text
            or height != 1
            or value._spans
            or value.justify not in _LEFT_ALIGNED
            or not plain.isprintable()  # tabs, newlines and controls: Rich's way
            or length > room
        ):
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            return [list(Segment.simplify(line)) for line in lines]
        component_style, post_style = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            row_index >= 0 and (row_index < self.fixed_rows or column_index < self.fixed_columns),
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        base_style += Style.from_meta({"row": row_index, "column": column_index})
        pre_style = base_style + component_style
        edge = pre_style + post_style
        # Rich styles the text through a span over it: an empty text has none.
        text_style = self.app.console.get_style(value.style) if value.style and plain else None
        left = " " * pad
        right = " " * (room - length + pad)
        style = pre_style + text_style + post_style if text_style else edge
        # Simplified as DataTable's line is: text styled like the padding (unstyled, or
        # bold in a bold header) joins it in one segment.
        if style == edge:
            return [[Segment(f"{left}{plain}{right}", edge)]]
        line = [Segment(plain, style)]
        if left:
            line.insert(0, Segment(left, edge))
        if right:
            line.append(Segment(right, edge))
        return [line]

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        # DataTable recomputes this for every row it draws, walking the DOM to blend
        # colours each time; it depends only on the kind of row, the base style and
        # the stylesheet (cleared below when that changes).
        kind = -1 if row_index == -1 else (row_index < self.fixed_rows, row_index % 2)
        key = (kind, base_style, self.zebra_stripes, self._pseudo_class_state)
        style = self._row_styles.get(key)
        if style is None:
            style = self._row_styles[key] = super()._get_row_style(row_index, base_style)
        return style

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._live_cells.clear()
        self._live_lines.clear()
        self._row_styles.clear()

    def notify_style_update(self) -> None:
        # Theme or CSS changed: every cached rendering has the old colours.
        self._live_cells.clear()
        self._live_lines.clear()
        self._row_styles.clear()
        super().notify_style_update()
