"""Everything in qqtui that depends on a private Textual name or tunes the interpreter.

- `acyclic_caches`, `cropped_renders`, `bar_repaints`: replacements of Textual methods,
  put in place by `install()` for the whole process.
- `content_keyed_lines`: the output pane's styles cache (per widget, when installed).
- `live_table`: LiveTable, a DataTable that overrides DataTable's private rendering.
- `scroll_only_growth`: panes whose content grows update their scroll bars, no layout.
- `input_first`: the app's input events go ahead of the poll thread (post_message).
- `crash_capture`: the app keeps the traceback of the error that ended it.
- `interpreter`: TEXTUAL_FPS, the garbage collector and the switch interval.

Each says why and what it measured, and gives the same answers as the code it replaces.
The app's entry point (tui/entry.py) calls `install()` before the app is built; an app
built anywhere else (tests) runs on stock Textual unless it is installed around it.
tests/tui/test_textual_private_names.py lists every private name used here, and fails on
one used outside this folder.

Nothing here imports Textual when the package is imported: Textual reads TEXTUAL_FPS
once, when it is first imported (see `interpreter`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The modules whose `patches()` list (class, attribute, replacement) triples.
_PATCHING = ("acyclic_caches", "cropped_renders", "bar_repaints")
_stock: dict[tuple[type, str], Any] = {}
"""What each patched class had under the attribute before `install()`, while installed."""
_INHERITED = object()  # the class had no attribute of its own: it used its base's


def install() -> None:
    """Put every replacement in place, for the whole process (idempotent)."""
    if _stock:
        return
    for name in _PATCHING:
        module = importlib.import_module(f"{__name__}.{name}")
        for owner, attribute, replacement in module.patches():
            _stock[owner, attribute] = vars(owner).get(attribute, _INHERITED)
            setattr(owner, attribute, replacement)


def uninstall() -> None:
    """Put stock Textual back (widgets built while installed keep their styles cache)."""
    while _stock:
        (owner, attribute), stock = _stock.popitem()
        if stock is _INHERITED:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, stock)


def is_installed() -> bool:
    return bool(_stock)


@contextmanager
def installed() -> Iterator[None]:
    """Installed for the block only (tests), unless it already was."""
    was = is_installed()
    install()
    try:
        yield
    finally:
        if not was:
            uninstall()
