"""RunTable: the job table, updated in place by row key, only the cells that changed.

Rows are formatted off the UI thread (`build_rows`, called by the poll worker) as
plain `(text, style)` cells; the widget diffs them against what it shows and turns
only the changed ones into Rich `Text`. With 10,000 runs a tick costs one tuple
comparison per row on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from qqtui.core import presentation
from qqtui.core.monitor import Progress
from qqtui.core.procs.scan import RunTree
from qqtui.core.records import RunRecord, Status
from qqtui.core.termtext import plain_field
from qqtui.tui.perf.live_table import LiveTable
from qqtui.tui.widgets import formatting as fmt

Cell = tuple[str, str]
"""Text and Rich style of one cell."""


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 5),
    Column("name", "Name / agent", 28),
    Column("status", "Status", 11),
    # The flag a running run may carry: " HUNG " or " WAIT " (it needs its user).
    Column("hung", "Flag", 6),
    Column("runtime", "Runtime", 7),
    Column("activity", "Active", 6),
    Column("cpu", "CPU  last minute", 17),
    Column("rss", "RSS", 7),
    Column("procs", "Procs", 5),
    Column("outcome", "Exit / reason", 28),
    Column("host", "Host", 10),
)
COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
# The sortable value of each column, computed with the row (see `build_rows`).
DEFAULT_SORT = ("id", True)

STATUS_WORDS = {s.value for s in Status} | {"hung", "waiting", "active", "done", "finished"}


@dataclass(frozen=True, slots=True)
class RowData:
    cells: tuple[Cell, ...]
    sort_values: tuple[Any, ...]
    waiting: bool = False
    """The run needs its user: its row sorts above the others, whatever the order."""


HOST_PREFIX = "host:"


def split_host_filter(query: str) -> tuple[list[str], list[str]]:
    """The words of `query` other than `host:NAME`, and the NAMEs (as typed)."""
    words: list[str] = []
    hosts: list[str] = []
    for word in query.split():
        if word.lower().startswith(HOST_PREFIX):
            if len(word) > len(HOST_PREFIX):  # a bare "host:" is still being typed
                hosts.append(word[len(HOST_PREFIX) :])
        else:
            words.append(word)
    return words, hosts


def matches_filter(run: RunRecord, query: str) -> bool:
    """`query` words: `host:NAME` keeps runs on that host (exactly; several are OR-ed);
    a status word (`running`, `failed`, `hung`, `waiting`, `active`, `done`) keeps runs in that
    state; any other word must appear in id, name, agent, command, host or reason
    (case-insensitive). All words must match."""
    if not query:
        return True
    words, hosts = split_host_filter(query.lower())
    if hosts and (run.host or "").lower() not in hosts:
        return False
    haystack: str | None = None
    for word in words:
        if word in STATUS_WORDS:
            if word == "hung":
                ok = run.hung and run.status is Status.RUNNING
            elif word == "waiting":
                ok = run.waiting and run.status is Status.RUNNING
            elif word == "active":
                ok = run.is_active
            elif word in ("done", "finished"):
                ok = run.status.is_final
            else:
                ok = run.status.value == word
            if not ok:
                return False
            continue
        if haystack is None:
            haystack = " ".join(
                (
                    str(run.id),
                    run.name,
                    run.agent,
                    " ".join(run.argv),
                    run.host or "",
                    run.reason or "",
                    run.session_id,
                )
            ).lower()
        if word not in haystack:
            return False
    return True


def run_row(
    run: RunRecord,
    tree: RunTree | None,
    history: Sequence[float],
    now: float,
    progress: Progress | None = None,
) -> RowData:
    """One table row for `run`: cells to show and values to sort by."""
    running = run.status is Status.RUNNING
    outcome = presentation.outcome(run)
    outcome_style = "red" if run.status in (Status.FAILED, Status.LOST) else "dim"
    if running and progress is not None and not outcome:
        # What the agent says it is doing beats an empty cell.
        outcome = f"{fmt.progress_bar(progress.fraction)} {progress.message}".rstrip()
        outcome_style = "green"
    runtime = run.runtime_s(now)
    activity_at = run.activity_at or run.started_at or run.created_at
    activity = max(0.0, now - activity_at)
    cpu = tree.cpu_percent if tree is not None else None
    rss = tree.rss if tree is not None else None
    procs = tree.count if tree is not None else None
    name = run.name or (run.argv[0] if run.argv else "")
    # Demo-style names already start with the agent ("coder: ..."); do not say it twice.
    show_agent = run.agent and run.agent != "default" and not name.startswith(run.agent)
    # Names, outcomes, progress and hosts are written by users and runs: no escape in them
    # may reach the terminal or shift the table's columns.
    name_text = plain_field(f"{name} · {run.agent}" if show_agent else name)
    waiting = running and run.waiting
    if waiting:
        # Why it waits beats progress: it is what the user has to answer.
        outcome = f"needs you: {run.waiting_reason or 'waiting for input'}"
        outcome_style = fmt.WAITING_TEXT_STYLE
    outcome = plain_field(outcome)
    hung = running and run.hung and not waiting
    flag, flag_style = ("", "")
    if waiting:
        flag, flag_style = " WAIT ", fmt.WAITING_STYLE
    elif hung:
        flag, flag_style = " HUNG ", fmt.HUNG_STYLE
    cells: tuple[Cell, ...] = (
        (str(run.id), "bold"),
        (name_text, ""),
        (presentation.status_label(run.status), fmt.STATUS_STYLES[run.status]),
        (flag, flag_style),
        (presentation.duration(runtime), ""),
        (presentation.age(activity) if run.is_active else "-", "yellow" if hung else "dim"),
        (
            f"{cpu:5.1f}% {fmt.sparkline(history)}" if cpu is not None else "",
            "cyan" if cpu and cpu >= 50 else "",
        ),
        (presentation.size(rss) if rss else "", ""),
        (str(procs) if procs else "", ""),
        (outcome, outcome_style),
        (plain_field(run.host or ""), "dim"),
    )
    sort_values = (
        run.id,
        name_text.lower(),
        (run.status.value, run.id),
        (2 if waiting else 1 if hung else 0, run.id),
        runtime or 0.0,
        activity if run.is_active else float("inf"),
        cpu or 0.0,
        rss or 0,
        procs or 0,
        outcome,
        run.host or "",
    )
    return RowData(cells, sort_values, waiting)


ACTIVITY_COLUMN = COLUMN_INDEX["activity"]
# Rows formatted between two calls of a build's checkpoint: ~2 ms of work.
CHECKPOINT_EVERY = 50


def _row_still_current(run: RunRecord, row: RowData, now: float) -> bool:
    """Whether an unchanged record's row is still right at `now`: always for a finished
    run; for a queued one while its coarse age reads the same; never for a running one."""
    if run.status.is_final:
        return True
    if run.status is Status.QUEUED:
        since = run.activity_at or run.started_at or run.created_at
        return row.cells[ACTIVITY_COLUMN][0] == presentation.age(max(0.0, now - since))
    return False


class RowBuilder:
    """Builds the table rows each poll, reusing the rows of finished runs.

    The monitor hands out the same record object while a run is unchanged, and a
    finished run's row depends on nothing else, so with 10,000 mostly finished
    runs a poll formats only the active ones. Used by one poll worker at a time.
    """

    def __init__(self) -> None:
        self._rows: dict[int, tuple[RunRecord, RowData]] = {}
        self._matches: dict[int, tuple[RunRecord, bool]] = {}
        self._query = ""

    def build(
        self,
        runs: Mapping[int, RunRecord],
        trees: Mapping[int, RunTree],
        cpu_history: Mapping[int, Sequence[float]],
        now: float,
        query: str,
        progress: Mapping[int, Progress] | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> dict[int, RowData]:
        """Rows for every run that passes the filter, keyed by run id; `checkpoint` is
        called every CHECKPOINT_EVERY rows formatted (see InputGate)."""
        progress = progress or {}
        formatted = 0
        if query != self._query:
            self._matches = {}
            self._query = query
        old_rows, old_matches = self._rows, self._matches
        rows: dict[int, tuple[RunRecord, RowData]] = {}
        matches: dict[int, tuple[RunRecord, bool]] = {}
        out: dict[int, RowData] = {}
        for run_id, run in runs.items():
            seen = old_matches.get(run_id)
            ok = seen[1] if seen is not None and seen[0] is run else matches_filter(run, query)
            matches[run_id] = (run, ok)
            if not ok:
                continue
            cached = old_rows.get(run_id)
            if cached is not None and cached[0] is run and _row_still_current(run, cached[1], now):
                row = cached[1]
            else:
                formatted += 1
                if checkpoint is not None and not formatted % CHECKPOINT_EVERY:
                    checkpoint()
                row = run_row(
                    run,
                    trees.get(run_id),
                    cpu_history.get(run_id, ()),
                    now,
                    progress.get(run_id),
                )
            rows[run_id] = (run, row)
            out[run_id] = row
        self._rows, self._matches = rows, matches
        return out


def build_rows(
    runs: Mapping[int, RunRecord],
    trees: Mapping[int, RunTree],
    cpu_history: Mapping[int, Sequence[float]],
    now: float,
    query: str,
) -> dict[int, RowData]:
    """Rows for every run that passes the filter (no reuse; see RowBuilder)."""
    return RowBuilder().build(runs, trees, cpu_history, now, query)


def cell_text(cell: Cell) -> Text:
    text, style = cell
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


class RunTable(LiveTable):
    """The runs, one row per run id; `apply` diffs in the new rows (and LiveTable
    re-renders only the changed cells)."""

    BINDINGS: list[BindingType] = [
        # The cursor keys are priority bindings, which the App runs as soon as the key
        # arrives. As DataTable's own (non-priority) bindings they ran only after the
        # key had gone to the table and bubbled back up through the screen to the App,
        # three more trips through the message queues; a repaint that became due in
        # between (a poll's, 10-15 ms) went first and the key waited for it.
        Binding("up", "cursor_up", "Cursor up", show=False, priority=True),
        Binding("down", "cursor_down", "Cursor down", show=False, priority=True),
        Binding("pageup", "page_up", "Page up", show=False, priority=True),
        Binding("pagedown", "page_down", "Page down", show=False, priority=True),
        Binding(
            "enter",
            "select_cursor",
            "Details",
            tooltip="Command, directories, env, attempts, times and the events timeline",
            id="run_table.details",
        ),
        Binding(
            "o",
            "cycle_sort",
            "Sort",
            tooltip="Sort by the next column (click a header to sort by it)",
            id="run_table.cycle_sort",
        ),
        Binding(
            "O",
            "reverse_sort",
            "Reverse",
            key_display="O",
            show=False,
            tooltip="Reverse the sort order",
            id="run_table.reverse_sort",
        ),
    ]

    def __init__(
        self,
        *,
        on_select: Callable[[int | None], None],
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            id=id,
            classes=classes,
            cursor_type="row",
            zebra_stripes=True,
            cursor_foreground_priority="renderable",
        )
        self._rows: dict[int, RowData] = {}
        self.sort_column, self.sort_reverse = DEFAULT_SORT
        self._selected: int | None = None
        # Called at once (not through a message) when the highlighted run changes, so
        # the panes that follow the selection repaint in the same frame as the cursor:
        # a message arrived after the cursor's repaint, and the panes waited one or two
        # more frames of the screen's 60 Hz timer (25 ms of a 40 ms key press).
        self._on_select = on_select
        self._applying = False

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(self._header(column), width=column.width, key=column.key)

    def _header(self, column: Column) -> Text:
        if column.key != self.sort_column:
            return Text(column.label)
        return Text(f"{column.label} {'▼' if self.sort_reverse else '▲'}", style="bold")

    @property
    def selected_run_id(self) -> int | None:
        return self._selected

    @property
    def run_ids(self) -> list[int]:
        """Shown run ids in display order."""
        return [int(row.key.value or 0) for row in self.ordered_rows]

    def apply(self, rows: dict[int, RowData]) -> None:
        """Make the table show `rows`: remove gone keys, update changed cells, add new rows."""
        selected = self._selected
        shown = self._rows
        if len(rows) == len(shown) and all(shown.get(k) is r for k, r in rows.items()):
            return  # nothing changed: no batch, no repaint (an idle app stays idle)
        with self.app.batch_update():
            # Rows removed or moved above shift the cursor on the way: report only
            # where it ends up.
            self._applying = True
            try:
                if self._apply_rows(rows):
                    self._sort()
            finally:
                self._applying = False
            self._restore_selection(selected)

    def _apply_rows(self, rows: dict[int, RowData]) -> bool:
        """Remove, update and add rows; whether the order may have changed."""
        resort = False
        sort_index = COLUMN_INDEX[self.sort_column]
        for run_id in [r for r in self._rows if r not in rows]:
            self.remove_row(str(run_id))
            del self._rows[run_id]
        changed: list[tuple[str, str, Text]] = []
        for run_id, row in rows.items():
            old = self._rows.get(run_id)
            if old is row:
                continue
            if old is None:
                self.add_row(*(cell_text(c) for c in row.cells), key=str(run_id))
                resort = True
            elif old != row:
                key = str(run_id)
                for column, old_cell, new_cell in zip(COLUMNS, old.cells, row.cells, strict=True):
                    if old_cell != new_cell:
                        changed.append((key, column.key, cell_text(new_cell)))
                if (
                    old.sort_values[sort_index] != row.sort_values[sort_index]
                    or old.waiting != row.waiting
                ):
                    resort = True
            self._rows[run_id] = row
        self.replace_cells(changed)
        return resort

    def _sort(self) -> None:
        index = COLUMN_INDEX[self.sort_column]
        rows = self._rows
        # Runs that need their user come first in either direction, then the order asked.
        ahead = self.sort_reverse  # the key that sorts first in this direction

        def key(row_values: list[Any]) -> Any:
            # The id column's first cell is the run id; look the sort value up by it.
            row = rows[int(row_values[0].plain)]
            return (row.waiting is ahead, row.sort_values[index])

        self.sort(key=key, reverse=self.sort_reverse)

    def _restore_selection(self, run_id: int | None) -> None:
        """Keep the cursor on the same run after rows moved; report if it is gone."""
        if not self.row_count:
            self._set_selected(None)
            return
        if run_id is not None and run_id in self._rows:
            index = self.get_row_index(str(run_id))
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
            self._set_selected(run_id)
            return
        row = min(self.cursor_row, self.row_count - 1)
        self.move_cursor(row=max(0, row), animate=False)
        self._set_selected(self._run_at_cursor())

    def _run_at_cursor(self) -> int | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None

    def _set_selected(self, run_id: int | None) -> None:
        if run_id != self._selected:
            self._selected = run_id
            self._on_select(run_id)

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if old.row != new.row and not self._applying:
            self._set_selected(self._run_at_cursor())

    def select_run(self, run_id: int) -> bool:
        """Move the cursor to `run_id` if it is shown."""
        if run_id not in self._rows:
            return False
        self.move_cursor(row=self.get_row_index(str(run_id)))
        # The cursor may already be on that row (then no highlight event comes).
        self._set_selected(run_id)
        return True

    @on(DataTable.HeaderSelected)
    def _on_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.set_sort(column, not self.sort_reverse)
        else:
            self.set_sort(column, False)

    def set_sort(self, column: str, reverse: bool) -> None:
        previous = self.sort_column
        self.sort_column, self.sort_reverse = column, reverse
        for key in {previous, column}:
            col = self.columns[ColumnKey(key)]
            col.label = self._header(next(c for c in COLUMNS if c.key == key))
        selected = self._selected
        self._sort()
        self._restore_selection(selected)
        self.refresh()

    def action_cycle_sort(self) -> None:
        index = (COLUMN_INDEX[self.sort_column] + 1) % len(COLUMNS)
        self.set_sort(COLUMNS[index].key, False)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_column, not self.sort_reverse)
