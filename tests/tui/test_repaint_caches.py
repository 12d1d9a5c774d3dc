"""content_keyed_lines and bar_repaints: the followed output pane and its scroll bar
paint exactly what Textual's stock code paints, and skip the work a one-line scroll
repeats (styling rows whose content only moved, drawing a bar that did not change)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from textual._styles_cache import StylesCache
from textual.geometry import Region
from textual.scrollbar import ScrollBar
from textual.strip import Strip

from qqtui.config import Settings
from qqtui.core.intents import output_log_path
from qqtui.core.store import Store
from qqtui.tui.perf import bar_repaints, content_keyed_lines
from qqtui.tui.widgets.output_view import OutputView
from tests.tui.conftest import select_run, wait_until
from tests.tui.test_app import SIZE, add, app_for

pytestmark = pytest.mark.usefixtures("perf_installed")


@contextmanager
def counting(owner: type, name: str) -> Iterator[list[int]]:
    """Count the calls of `owner.name` (the stock method our code calls into)."""
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)
    try:
        yield calls
    finally:
        setattr(owner, name, original)


def stock_lines(view: OutputView) -> list[Strip]:
    """The pane's lines as a fresh stock StylesCache styles them."""
    return StylesCache().render_widget(view, view.size.region)


async def followed_view(pilot, app, settings: Settings, store: Store, lines: int):  # type: ignore[no-untyped-def]
    run_id = add(store, settings, "sleep", "300")
    await select_run(pilot, app, run_id)
    log = output_log_path(settings.home, store.get_run(run_id))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"\x1b[3{i % 8}mline {i}\x1b[0m tail\n" for i in range(lines)))
    view = app.screen.query_one(OutputView)
    await wait_until(pilot, lambda: view.line_count >= lines)
    await pilot.pause()
    return view, log


@pytest.mark.asyncio
async def test_the_output_pane_styles_as_stock_textual_does_and_once_per_line(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        view, log = await followed_view(pilot, app, tui_settings, tui_store, 300)
        assert isinstance(view._styles_cache, content_keyed_lines.ContentKeyedStylesCache)
        full = view.size.region
        steps = [
            lambda: view.scroll_to(y=100, animate=False),
            lambda: view.scroll_to(y=101, animate=False),
            lambda: view.scroll_to(y=99, animate=False),
            lambda: view.scroll_to(x=3, animate=False),  # every line's crop changes
            lambda: view.scroll_to(x=0, y=40, animate=False),
            lambda: view.focus(),  # the border colour changes on every content row
            lambda: app.screen.set_focus(None),
            lambda: setattr(view, "border_title", "another title"),
            lambda: setattr(view, "border_subtitle", "a subtitle"),
            lambda: setattr(view.styles, "padding", (1, 2)),
            lambda: setattr(view.styles, "padding", 0),
            lambda: view.scroll_end(animate=False),
        ]
        for step in steps:
            step()
            await pilot.pause()
            view.refresh()
            ours = view._styles_cache.render_widget(view, view.size.region)
            assert ours == stock_lines(view), step
        # Following: one more line scrolls the pane by one row.
        view.scroll_end(animate=False)
        await pilot.pause()
        view._styles_cache.render_widget(view, full)
        with log.open("a") as f:
            f.write("one more line\n")
        await wait_until(pilot, lambda: view.line_count == 301)
        view.scroll_end(animate=False)
        await pilot.pause()
        view.refresh()
        with counting(StylesCache, "render_line") as styled:
            ours = view._styles_cache.render_widget(view, full)
        assert ours == stock_lines(view)
        # The two border rows and the row that shows the new line; the others moved.
        assert styled[0] <= 3, styled[0]


@pytest.mark.asyncio
async def test_the_scroll_bar_paints_as_stock_textual_does_and_only_when_it_changes(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        view, _log = await followed_view(pilot, app, tui_settings, tui_store, 5000)
        bar = view.vertical_scrollbar
        assert isinstance(bar, ScrollBar)
        crop = bar.size.region

        def same_as_stock() -> None:
            assert bar.render_lines(crop) == bar_repaints._stock_render_lines(bar, crop)

        with counting(bar_repaints, "_stock_render_lines") as painted:
            for y in range(2000, 2010):  # ten one-line scrolls of a 5,000-line log
                view.scroll_to(y=y, animate=False)
                await pilot.pause()
                bar.render_lines(crop)
        assert painted[0] <= 2, painted[0]  # the thumb moved at most once
        for y in (0, 1, 2500, 4999):
            view.scroll_to(y=y, animate=False)
            await pilot.pause()
            same_as_stock()
        bar.mouse_over = True  # the hover colours
        await pilot.pause()
        same_as_stock()
        bar.mouse_over = False
        await pilot.pause()
        same_as_stock()
        assert bar.render_lines(Region(0, 3, 1, 4)) == bar_repaints._stock_render_lines(
            bar, Region(0, 3, 1, 4)
        )
