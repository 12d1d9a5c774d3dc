"""qqtui's replacements of Textual code are installed by the app's entry point for its
process, and can be taken out again: building an app (as every test does) patches nothing."""

from __future__ import annotations

import subprocess
import sys

from textual._compositor import Compositor
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.widget import Widget

from qqtui.config import Settings
from qqtui.core.store import Store
from qqtui.tui import perf
from qqtui.tui.app import make_app
from qqtui.tui.widgets.output_view import OutputView


def patched() -> list[str]:
    """The Textual methods that are qqtui's code right now."""
    methods = {
        "Compositor._get_renders": Compositor._get_renders,
        "ScrollBar.render_lines": ScrollBar.render_lines,
        "Strip.divide": Strip.divide,
    }
    return [name for name, method in methods.items() if method.__module__.startswith("qqtui")]


def test_building_an_app_patches_nothing(tui_settings: Settings, tui_store: Store) -> None:
    assert not perf.is_installed()
    app = make_app(tui_settings, tui_store, start_worker=False)
    assert app is not None
    assert patched() == []
    assert type(OutputView()._styles_cache).__module__.startswith("textual")


def test_install_and_uninstall_put_back_exactly_what_was_there() -> None:
    assert ScrollBar.render_lines is Widget.render_lines  # inherited, not its own
    with perf.installed():
        assert perf.is_installed()
        assert patched() == ["Compositor._get_renders", "ScrollBar.render_lines", "Strip.divide"]
        assert "perf" in type(OutputView()._styles_cache).__module__
        perf.install()  # idempotent: uninstall still finds the stock methods
    assert not perf.is_installed()
    assert patched() == []
    assert "render_lines" not in vars(ScrollBar)


PROBE = (
    "import qqtui.tui.entry; from qqtui.tui import perf;"
    " print(perf.is_installed(), 'textual' in __import__('sys').modules)"
)


def test_the_entry_point_module_imports_no_textual_and_installs_nothing_yet() -> None:
    # Textual must be imported by `import_app` (it reads TEXTUAL_FPS once, at import):
    # `qqtui` reaches tui/entry.py first, so that module and perf's package stay light.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
