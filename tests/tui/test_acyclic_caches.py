"""acyclic_caches: Textual's strips and LRU caches give the same answers as before, and
what they drop is freed by reference counting, not left for the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.strip import Strip

from qqtui.config import Settings
from qqtui.core.store import Store
from qqtui.tui.perf import acyclic_caches
from qqtui.tui.screens.main import MainScreen
from tests.tui.conftest import select_run, wait_until
from tests.tui.test_app import SIZE, add, app_for

RED = Style(color="red")


def strip() -> Strip:
    return Strip([Segment("ab", RED), Segment("cdé"), Segment("fg", RED)])


pytestmark = pytest.mark.usefixtures("perf_installed")


@contextmanager
def cycles_left() -> Iterator[list[object]]:
    """Fills the list, as the block ends, with what the collector finds unreachable
    among what the block left behind (the collector does not run in between)."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def cyclic_garbage(make: Callable[[], object]) -> list[object]:
    """What the collector finds unreachable after `make()` ran and its result was dropped."""
    with cycles_left() as found:
        make()
    return found


@pytest.mark.parametrize(
    "cuts",
    [[7], [7, 9], [3, 7], [2, 5, 7], [2, 5], [0, 7], [], [9], [1, 2, 3, 4, 5, 6, 7]],
)
def test_divide_answers_what_the_stock_method_answers(cuts: list[int]) -> None:
    ours = strip().divide(cuts)
    stock = acyclic_caches._stock_divide(strip(), cuts)
    assert [(s.text, list(s), s.cell_length) for s in ours] == [
        (s.text, list(s), s.cell_length) for s in stock
    ]


def test_divide_at_the_whole_width_is_the_strip_itself() -> None:
    s = strip()
    assert [x is s for x in s.divide(iter([7]))] == [True]
    assert [x is s for x in s.divide([7, 8])] == [True]


@pytest.mark.parametrize("span", [(0, 7), (-1, 7), (0, 9), (2, 7), (0, 3), (3, 12)])
def test_crop_extend_answers_what_the_stock_method_answers(span: tuple[int, int]) -> None:
    ours = strip().crop_extend(*span, RED)
    stock = acyclic_caches._stock_crop_extend(strip(), *span, RED)
    assert (ours.text, list(ours), ours.cell_length) == (
        stock.text,
        list(stock),
        stock.cell_length,
    )


def test_strips_cut_whole_are_not_left_to_the_collector() -> None:
    def cut() -> None:
        s = strip()
        s.divide([7])
        s.crop_extend(0, 7, None)
        s.divide([3, 7])  # cached pieces are other strips: no cycle either way

    assert cyclic_garbage(cut) == []


def test_the_stock_divide_is_what_made_the_cycle() -> None:
    # Why this module exists: should Textual stop caching a strip in itself, this fails
    # and the replacement can go.
    def stock_cut() -> None:
        s = strip()
        acyclic_caches._stock_divide(s, [7])

    assert any(isinstance(o, Strip) for o in cyclic_garbage(stock_cut))


def test_lru_cache_keeps_its_order_and_frees_what_it_drops() -> None:
    cache: LRUCache[int, Strip] = LRUCache(3)  # lives on, as a widget's caches do

    def use() -> None:
        for i in range(5):
            cache.set(i, strip())
        assert list(cache.keys()) == [2, 3, 4]
        assert cache.get(2) is not None  # now the most recently used
        cache.set(5, strip())  # evicts 3, the least recently used
        assert list(cache.keys()) == [2, 4, 5]
        cache.discard(4)
        assert 4 not in cache and cache.get(5) is not None
        cache.clear()
        assert len(cache) == 0 and cache.get(2) is None
        cache.set(7, strip())
        assert cache.get(7) is not None  # usable after clear
        cache.discard(7)  # its last entry: a link that pointed at itself
        assert len(cache) == 0
        cache.set(8, strip())
        assert list(cache.keys()) == [8]
        cache.clear()

    assert cyclic_garbage(use) == []


@pytest.mark.asyncio
async def test_changing_the_selection_leaves_no_strips_for_the_collector(
    tui_settings: Settings, tui_store: Store
) -> None:
    ids = [add(tui_store, tui_settings, "sleep", "300", name=f"run {i}") for i in range(4)]
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, ids[-1])
        screen = app.screen
        assert isinstance(screen, MainScreen)

        async def press(key: str, want: int) -> None:
            await pilot.press(key)
            await wait_until(pilot, lambda: screen.selected_run and screen.selected_run.id == want)
            await pilot.pause()

        # One round first: the footer and the panes settle after their first change.
        await press("down", ids[-2])
        await press("up", ids[-1])
        with cycles_left() as found:
            for key, want in (("down", ids[-2]), ("down", ids[-3]), ("up", ids[-2])):
                await press(key, want)
    kinds = {type(o).__name__ for o in found}
    # Workers and their tasks still make cycles of their own; the repaints must not.
    assert "Strip" not in kinds
    assert "Segment" not in kinds
