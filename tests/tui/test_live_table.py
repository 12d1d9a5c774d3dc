"""LiveTable and OutputView repaint what changed: one changed cell re-renders one cell,
and rows or log lines that arrive do not lay out the whole screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.pilot import Pilot
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from qqtui.tui.perf.live_table import LiveTable
from qqtui.tui.widgets.output_view import OutputView

SIZE = (80, 24)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        table = LiveTable(cursor_type="row")
        table.styles.height = "1fr"  # as the app's stylesheet sizes its tables
        yield table

    def on_mount(self) -> None:
        table = self.query_one(LiveTable)
        for key in ("a", "b", "c"):
            table.add_column(key.upper(), width=8, key=key)
        for i in range(5):
            table.add_row(*(Text(f"{key}{i}") for key in "abc"), key=str(i))


def rows_shown(table: LiveTable) -> list[str]:
    return [table.render_line(y).text.split() for y in range(1, table.row_count + 1)]


class Counter:
    """Counts cells rendered anew (not reused by LiveTable) and screen layouts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cells = 0
        self.layouts = 0
        render_cell = LiveTable._render_fresh_cell
        refresh_layout = Screen._refresh_layout

        def counted_cell(table: LiveTable, *args: object, **kwargs: object) -> object:
            self.cells += 1
            return render_cell(table, *args, **kwargs)  # type: ignore[arg-type]

        def counted_layout(screen: Screen, *args: object, **kwargs: object) -> object:
            self.layouts += 1
            return refresh_layout(screen, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(LiveTable, "_render_fresh_cell", counted_cell)
        monkeypatch.setattr(Screen, "_refresh_layout", counted_layout)

    def reset(self) -> None:
        self.cells = self.layouts = 0


async def settle(pilot: Pilot[None]) -> None:
    for _ in range(3):
        await pilot.pause()


@pytest.mark.asyncio
async def test_one_changed_cell_re_renders_one_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter(monkeypatch)
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(LiveTable)
        await settle(pilot)
        assert rows_shown(table)[3] == ["a3", "b3", "c3"]
        counter.reset()
        table.update_cell("3", "b", Text("NEW"))
        await settle(pilot)
        assert rows_shown(table)[3] == ["a3", "NEW", "c3"]
        assert counter.cells == 1  # DataTable alone re-renders all 15 visible cells


@pytest.mark.asyncio
async def test_replaced_cells_repaint_only_themselves_with_one_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = Counter(monkeypatch)
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(LiveTable)
        await settle(pilot)
        refreshes = 0
        refresh = table.refresh

        def counted_refresh(*args: object, **kwargs: object) -> object:
            nonlocal refreshes
            refreshes += 1
            return refresh(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(table, "refresh", counted_refresh)
        counter.reset()
        table.replace_cells(
            [("1", "a", Text("X1")), ("3", "c", Text("Y3")), ("4", "b", Text("Z4"))]
        )
        assert refreshes == 1  # update_cell would have refreshed three times
        await settle(pilot)
        assert rows_shown(table)[1] == ["X1", "b1", "c1"]
        assert rows_shown(table)[3] == ["a3", "b3", "Y3"]
        assert rows_shown(table)[4] == ["a4", "Z4", "c4"]
        assert counter.cells == 3
        with pytest.raises(CellDoesNotExist):
            table.replace_cells([("9", "a", Text("nope"))])
        table.replace_cells([])  # nothing to do: no refresh
        assert refreshes == 1


@pytest.mark.asyncio
async def test_sorting_and_restyling_still_repaint(monkeypatch: pytest.MonkeyPatch) -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(LiveTable)
        await settle(pilot)
        table.sort("a", key=lambda cell: cell.plain, reverse=True)
        await settle(pilot)
        assert [row[0] for row in rows_shown(table)] == ["a4", "a3", "a2", "a1", "a0"]
        before = table.render_line(2)
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await settle(pilot)
        after = table.render_line(2)
        assert after.text == before.text
        assert [s.style for s in after] != [s.style for s in before]  # new colours


class TwinApp(App[None]):
    """A LiveTable and a DataTable holding the same cells, side by side."""

    AUTO_FOCUS = None
    CELLS = (
        (Text("1", style="bold"), Text("coder: fix the tests", style="green"), Text("")),
        (Text("22"), Text("a name far too long for its column"), Text("日本語", style="cyan")),
        ("[bold]markup[/]", Text("tab\there"), None),
        (Text("4", style="red on blue"), Text("ends in a space "), 4.5),
        (Text("5"), Text.assemble(("span", "bold"), " and plain"), Text("x", justify="right")),
        (Text("6"), Text("dim one", style="dim"), Text("", style="bold")),
    )

    def compose(self) -> ComposeResult:
        for table in (LiveTable(id="live"), DataTable(id="plain")):
            table.cursor_type = "row"
            table.zebra_stripes = True
            table.styles.height = 10
            table.styles.width = 50  # narrower than the columns: scrolls sideways
            yield table

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_column(Text("ID ▲", style="bold"), width=4, key="id")
            table.add_column("Name", width=18, key="name")
            table.add_column("Extra", width=20, key="extra")
            table.add_column("Auto", key="auto")  # sized by its content
            for i, cells in enumerate(self.CELLS):
                table.add_row(*cells, Text(f"auto {'x' * i}"), key=str(i))


def lines_of(table: DataTable) -> list[Strip]:
    return table.render_lines(Region(0, 0, table.size.width, table.size.height))


@pytest.mark.asyncio
async def test_lines_are_those_datatable_draws() -> None:
    """The short cuts (lines reused, plain cells drawn directly) draw what DataTable
    draws, segment for segment: cursor, hover, zebra, focus, truncated, wide, styled,
    markup and non-Text cells, and a table scrolled sideways."""
    app = TwinApp()
    async with app.run_test(size=(120, 24)) as pilot:
        live, plain = app.query_one("#live", LiveTable), app.query_one("#plain", DataTable)
        await settle(pilot)

        def same() -> None:
            assert [list(s) for s in lines_of(live)] == [list(s) for s in lines_of(plain)]
            for y in range(live.size.height):
                assert list(live.render_line(y)) == list(plain.render_line(y))

        same()
        for row in (2, 5, 0):
            for table in (live, plain):
                table.move_cursor(row=row)
            await settle(pilot)
            same()
        for table in (live, plain):
            table.hover_coordinate = Coordinate(3, 1)
            table._show_hover_cursor = True
        await settle(pilot)
        same()
        # Each drawn focused (the cursor has another colour), one at a time.
        live.focus()
        await settle(pilot)
        focused_live = [list(s) for s in lines_of(live)]
        plain.focus()
        await settle(pilot)
        assert focused_live == [list(s) for s in lines_of(plain)]
        app.set_focus(None)
        await settle(pilot)
        same()
        for table in (live, plain):
            table.scroll_to(x=7, animate=False)
            table.update_cell("1", "name", Text("renamed", style="italic"))
        await settle(pilot)
        assert live.scroll_offset.x == 7
        same()
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await settle(pilot)
        same()


@pytest.mark.asyncio
async def test_only_rows_that_changed_are_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    render_row_line = LiveTable._render_row_line

    def counted(table: LiveTable, row_index: int, *args: object) -> Strip:
        drawn.append(row_index)
        return render_row_line(table, row_index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(LiveTable, "_render_row_line", counted)
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(LiveTable)
        table.focus()
        await settle(pilot)
        drawn.clear()
        await pilot.press("down")  # the cursor leaves row 0 for row 1
        await settle(pilot)
        assert sorted(drawn) == [0, 1]  # DataTable draws every visible row again
        drawn.clear()
        table.replace_cells([("3", "b", Text("NEW"))])
        await settle(pilot)
        assert drawn == [3]
        assert rows_shown(table)[3] == ["a3", "NEW", "c3"]


@pytest.mark.asyncio
async def test_rows_arriving_do_not_lay_out_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter(monkeypatch)
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(LiveTable)
        for i in range(5, 60):  # past the height: the scrollbar appears (one layout)
            table.add_row(*(Text(f"{key}{i}") for key in "abc"), key=str(i))
        await settle(pilot)
        assert table.show_vertical_scrollbar
        counter.reset()
        for i in range(60, 80):
            table.add_row(*(Text(f"{key}{i}") for key in "abc"), key=str(i))
            await pilot.pause()
        await settle(pilot)
        assert counter.layouts == 0
        assert table.virtual_size.height == 81  # header + 80 rows
        assert table.vertical_scrollbar.window_virtual_size == 81
        table.move_cursor(row=79)
        await settle(pilot)
        visible = [table.render_line(y).text.split() for y in range(table.size.height)]
        assert ["a79", "b79", "c79"] in visible  # scrolled to the last row


class OutputApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield OutputView(self.path)


@pytest.mark.asyncio
async def test_followed_output_does_not_lay_out_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(monkeypatch)
    log = tmp_path / "run.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        while view.line_count < 100:
            await pilot.pause(0.02)
        await settle(pilot)
        counter.reset()
        for i in range(100, 110):
            with log.open("ab") as f:
                f.write(b"line %d\n" % i)
            while view.line_count < i + 1:
                await pilot.pause(0.02)
        await settle(pilot)
        assert counter.layouts == 0
        last = view.render_line(view.scrollable_content_region.height - 1).text.strip()
        assert last == "line 109"  # still following
        assert view.vertical_scrollbar.window_virtual_size == view.virtual_size.height


@pytest.mark.asyncio
async def test_switching_logs_does_not_lay_out_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(monkeypatch)
    logs = {}
    for name in ("a", "b"):
        logs[name] = tmp_path / f"{name}.log"
        logs[name].write_bytes(b"".join(b"%s line %d\n" % (name.encode(), i) for i in range(100)))
    app = OutputApp(logs["a"])
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        while not (view.line_count == 100 and view.show_vertical_scrollbar):
            await pilot.pause(0.02)
        await settle(pilot)
        counter.reset()
        for name in ("b", "a", "b"):
            view.set_path(logs[name])
            height = view.scrollable_content_region.height
            last = f"{name} line 99"
            for _ in range(250):
                if view.render_line(height - 1).text.strip() == last:
                    break
                await pilot.pause(0.02)
            assert view.render_line(height - 1).text.strip() == last
            assert view.follow and view.show_vertical_scrollbar
        assert counter.layouts == 0
        view.set_path(tmp_path / "missing.log")  # nothing to scroll: the scrollbar goes
        await settle(pilot)
        assert not view.show_vertical_scrollbar and view.follow
        assert view.render_line(0).text.strip() == "waiting for output…"
