"""Every private Textual name qqtui relies on, checked against the installed Textual: a
release that renames or drops one fails here, by name, instead of on a user's screen.

pyproject pins Textual to the range the suite has run on; when raising the pin, this is
the list to read. Names set in __init__ are checked on a fresh instance."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from textual._compositor import Compositor
from textual._styles_cache import StylesCache
from textual.app import App
from textual.cache import LRUCache
from textual.widget import Widget
from textual.widgets import DataTable

import qqtui.tui

# (Textual class, private name): where qqtui uses it.
CLASS_NAMES: dict[tuple[type, str], str] = {
    (App, "_handle_exception"): "tui/perf/crash_capture.py: the app keeps a crash's traceback",
    (Widget, "_scroll_update"): "tui/perf/scroll_only_growth.py: scroll bars without a layout",
    (DataTable, "_clear_caches"): "tui/perf/live_table.py: LiveTable",
    (DataTable, "_get_offsets"): "tui/perf/live_table.py: LiveTable",
    (DataTable, "_get_row_style"): "tui/perf/live_table.py: LiveTable",
    (DataTable, "_get_styles_to_render_cell"): "tui/perf/live_table.py: LiveTable",
    (DataTable, "_render_cell"): "tui/perf/live_table.py: LiveTable",
    (DataTable, "_render_line"): "tui/perf/live_table.py: LiveTable",
    (Compositor, "_get_renders"): "tui/perf/cropped_renders.py",
    (Compositor, "_render_chops"): "tui/perf/cropped_renders.py: what it feeds",
    (StylesCache, "render_line"): "tui/perf/content_keyed_lines.py overrides it",
    (StylesCache, "render_widget"): "tui/perf/content_keyed_lines.py: what calls it",
}
DATATABLE_ATTRIBUTES = [
    "_cell_render_cache",
    "_column_locations",
    "_data",
    "_header_row_key",
    "_labelled_row_exists",
    "_line_cache",
    "_pseudo_class_state",
    "_row_locations",
    "_row_render_cache",
    "_row_renderable_cache",
    "_show_hover_cursor",
    "_update_count",
]  # tui/perf/live_table.py: LiveTable reads these
LRU_SLOTS = ("_cache", "_head")  # tui/perf/acyclic_caches.py unlinks the ring


@pytest.mark.parametrize(
    ("owner", "name"), list(CLASS_NAMES), ids=lambda v: getattr(v, "__name__", v)
)
def test_each_private_method_qqtui_uses_is_still_there(owner: type, name: str) -> None:
    assert hasattr(owner, name), (
        f"this Textual has no {owner.__name__}.{name}, which qqtui/{CLASS_NAMES[owner, name]} "
        "relies on: keep the pin in pyproject.toml, or port that code"
    )


def test_each_private_attribute_qqtui_reads_is_still_there() -> None:
    table = DataTable()
    missing = [name for name in DATATABLE_ATTRIBUTES if not hasattr(table, name)]
    assert not missing, f"this Textual's DataTable has none of {missing} (LiveTable reads them)"
    assert hasattr(Compositor(), "_dirty_regions"), "Compositor._dirty_regions (tests) is gone"
    assert isinstance(Widget()._styles_cache, StylesCache), "Widget._styles_cache is gone"
    slots = getattr(LRUCache, "__slots__", ())
    assert all(name in slots for name in LRU_SLOTS), f"LRUCache slots are now {slots}"


def test_every_private_textual_method_used_in_the_app_is_listed_here() -> None:
    """A new override or call of a private Textual method must be declared above, and
    live under qqtui/tui/perf/."""
    declared = {(owner.__name__, name) for owner, name in CLASS_NAMES}
    used: set[tuple[str, str]] = set()
    outside: set[str] = set()
    for info in pkgutil.walk_packages(qqtui.tui.__path__, "qqtui.tui."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            bases = [b for b in cls.__mro__[1:] if b.__module__.startswith("textual")]
            source = inspect.getsource(cls)
            for name in set(re.findall(r"\b(?:self|super\(\))\.(_[a-z]\w*)", source)):
                owner = next((b for b in bases if name in vars(b)), None)
                if owner is not None:
                    used.add((owner.__name__, name))
                    if not info.name.startswith("qqtui.tui.perf."):
                        outside.add(f"{info.name}.{cls.__name__} uses {owner.__name__}.{name}")
    assert used <= declared, f"declare these in CLASS_NAMES: {sorted(used - declared)}"
    assert not outside, f"private Textual names belong in qqtui/tui/perf/: {sorted(outside)}"


def test_the_styles_cache_override_takes_the_stock_arguments() -> None:
    """content_keyed_lines passes render_line's arguments through by position."""
    from qqtui.tui.perf.content_keyed_lines import ContentKeyedStylesCache

    stock = list(inspect.signature(StylesCache.render_line).parameters)
    ours = list(inspect.signature(ContentKeyedStylesCache.render_line).parameters)
    assert ours == stock, f"StylesCache.render_line now takes {stock}: port content_keyed_lines"
