"""cropped_renders: a partial screen update paints the same cells as Textual's stock
compositor, and asks only the widgets inside the changed area for their lines."""

from __future__ import annotations

import random

import pytest
from rich.console import Console
from textual._compositor import Compositor
from textual.geometry import Region

from qqtui.config import Settings
from qqtui.core.intents import output_log_path
from qqtui.core.store import Store
from qqtui.tui.perf import cropped_renders
from qqtui.tui.screens.main import MainScreen
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.run_table import RunTable
from tests.tui.conftest import select_run, wait_until
from tests.tui.test_app import SIZE, add, app_for

pytestmark = pytest.mark.usefixtures("perf_installed")


def partial_update(
    compositor: Compositor, console: Console, regions: list[Region], *, stock: bool
) -> str | None:
    """What the compositor writes for these changed regions, with either method."""
    method = cropped_renders._stock_get_renders if stock else cropped_renders._get_renders
    saved = Compositor._get_renders
    Compositor._get_renders = method  # type: ignore[method-assign]
    try:
        compositor._dirty_regions.clear()
        compositor._dirty_regions.update(regions)
        update = compositor.render_partial_update()
    finally:
        Compositor._get_renders = saved  # type: ignore[method-assign]
    return None if update is None else update.render_segments(console)


@pytest.mark.asyncio
async def test_partial_updates_paint_what_the_stock_compositor_paints(
    tui_settings: Settings, tui_store: Store
) -> None:
    ids = [add(tui_store, tui_settings, "sleep", "300", name=f"run {i}") for i in range(6)]
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, ids[-1])
        log = output_log_path(tui_settings.home, tui_store.get_run(ids[-1]))
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"\x1b[3{i % 8}mline {i}\x1b[0m\n" for i in range(200)))
        view = app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count >= 200)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MainScreen)
        compositor = screen._compositor
        width, height = SIZE
        pane = view.region
        table = screen.query_one(RunTable).region
        regions = [
            [pane],  # a line appended to the followed output
            [table],  # a poll's table
            [pane, table],
            [Region(0, 0, width, height)],
            [Region(pane.right - 2, pane.y, 2, pane.height), pane],  # its scroll bar too
        ]
        rng = random.Random(1307)
        for _ in range(60):
            x, y = rng.randrange(width), rng.randrange(height)
            w, h = rng.randint(1, width - x), rng.randint(1, height - y)
            regions.append([Region(x, y, w, h)])
        for changed in regions:
            stock = partial_update(compositor, app.console, changed, stock=True)
            ours = partial_update(compositor, app.console, changed, stock=False)
            assert ours == stock, changed


@pytest.mark.asyncio
async def test_an_output_pane_update_paints_only_the_widgets_it_covers(
    tui_settings: Settings, tui_store: Store
) -> None:
    run_id = add(tui_store, tui_settings, "sleep", "300")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, run_id)
        await pilot.pause()
        screen = app.screen
        view = screen.query_one(OutputView)
        asked: list[str] = []
        table = screen.query_one(RunTable)
        for widget in (table, view):
            original = widget.render_lines

            def spy(crop: Region, widget=widget, original=original):  # type: ignore[no-untyped-def]
                asked.append(type(widget).__name__)
                return original(crop)

            widget.render_lines = spy  # type: ignore[method-assign]
        partial_update(screen._compositor, app.console, [view.region], stock=False)
        assert asked == ["OutputView"]
        asked.clear()
        partial_update(screen._compositor, app.console, [view.region], stock=True)
        assert sorted(asked) == ["OutputView", "RunTable"]  # what it saves
