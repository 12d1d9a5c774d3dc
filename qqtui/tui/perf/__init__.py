"""Everything in qqtui that depends on a private Textual name or tunes the interpreter.

Each module replaces or tunes one thing, says why and what it measured, and gives the
same answers as the code it replaces; `install()` puts them all in place, once, before
anything renders.
"""

from __future__ import annotations

from qqtui.tui.perf import acyclic_caches, cropped_renders


def install() -> None:
    """Install every replacement, for the whole process (idempotent)."""
    acyclic_caches.install()
    cropped_renders.install()
