"""Where qqtui's replacements of private Textual code live (#14 fences them all here).

Each module replaces one thing, says why and what it measured, and gives the same
answers as the code it replaces; `install()` puts them in place before anything renders.
Not moved here yet: LiveTable's DataTable overrides (widgets/table_base.py), QqApp's
`post_message` and `_handle_exception`, and the interpreter tuning in tui/launch.py (gc,
the switch interval, TEXTUAL_FPS). tests/tui/test_textual_private_names.py lists every
private name either relies on.
"""

from __future__ import annotations

from qqtui.tui.perf import acyclic_caches, bar_repaints, cropped_renders


def install() -> None:
    """Install every replacement, for the whole process (idempotent)."""
    acyclic_caches.install()
    cropped_renders.install()
    bar_repaints.install()
