"""LiveTable: a DataTable for tables that change every poll, repainting only what changed.

Textual's DataTable keys its rendered cells on a counter that every `update_cell`
bumps, so changing one cell re-renders every visible cell. With 100 running runs the
runs table changes every second (runtimes, CPU), and re-rendering all its ~200 visible
cells cost 40-100 ms of the event loop per poll: the app's main CPU cost and what kept
key presses waiting. Here a rendered cell is reused as long as the cell's value is the
same object (the tables replace values, never mutate them) and nothing else that goes
into its rendering (row position, style, cursor, hover, width, focus) changed.

Also, a new row count is not a reason for a layout of the whole screen: see
`watch_virtual_size`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

_CELL_CACHE_SIZE = 10_000  # as DataTable's own cell cache
_DEAD_CACHE_SIZE = 256  # rows (or cells) of a few screens


class LiveTable(DataTable[Any]):
    """A DataTable whose cells are replaced (never mutated in place) as data changes."""

    # Widget's `virtual_size` asks for a layout of the whole screen whenever it changes,
    # which re-arranges and re-renders every widget (20-100 ms here). A table sized by
    # the stylesheet (`height: 1fr`) only needs its scrollbars updated when rows come or
    # go; the watcher still asks for a layout when the size depends on the content.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def __init__(self, **kwargs: Any) -> None:
        # Before DataTable's __init__, which may already clear caches.
        self._live_cells: LRUCache[tuple[object, ...], tuple[object, list[list[Segment]]]] = (
            LRUCache(_CELL_CACHE_SIZE)
        )
        self._row_styles: dict[tuple[object, ...], Style] = {}
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

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        styles = self.styles
        width_follows = old.width != new.width and (styles.width is None or styles.width.is_auto)
        height_follows = old.height != new.height and (
            styles.height is None or styles.height.is_auto
        )
        if width_follows or height_follows:
            self.refresh(layout=True)
        else:
            self._scroll_update(new)

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
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._live_cells[key] = (value, lines)
        return lines

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
        self._row_styles.clear()

    def notify_style_update(self) -> None:
        # Theme or CSS changed: every cached rendering has the old colours.
        self._live_cells.clear()
        self._row_styles.clear()
        super().notify_style_update()
