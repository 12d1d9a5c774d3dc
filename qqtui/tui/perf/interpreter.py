"""How the app's process is tuned: Textual's frame rate, the garbage collector and the
interpreter's thread switch interval. Each is set once, by the app's entry point."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qqtui.tui.app import QqApp

# Textual's own setting, read once when it is imported. A screen repaints on a timer of
# this rate, and the frame after one that came off an idle timer waits one to two
# periods: at 60 a key press landing just after a poll's repaint waited up to 33 ms
# for its own; at 120, up to 17 (bench/README.md, "App"). Frames are drawn only when
# something changed, so an idle app pays nothing for it; a flooding run's output view
# costs ~1.4 points of a core more (6.7% -> 8.1%). The user's own value wins.
FPS_ENV = "TEXTUAL_FPS"
APP_FPS = 120

# How long a thread may hold the interpreter while another waits for it (Python's
# default is 5 ms). The app's loop shares it with the poll thread, and Textual writes
# each frame to the terminal from a thread of its own: with 5 ms, a frame that was
# ready waited a median 1.9 ms (up to 5) for that thread to be let in, and a key that
# arrived during a poll waited up to 5 ms at each turn of the loop. Threads only trade
# turns this often while both have work, so an idle app pays nothing for it.
SWITCH_INTERVAL_S = 0.0005


def import_app() -> Callable[..., QqApp]:
    """`make_app`, with Textual imported at APP_FPS unless the user set TEXTUAL_FPS.

    The variable is only there while Textual reads it: the app starts the worker,
    and the worker's runs inherit its environment.
    """
    if FPS_ENV in os.environ:
        from qqtui.tui.app import make_app
    else:
        os.environ[FPS_ENV] = str(APP_FPS)
        try:
            from qqtui.tui.app import make_app
        finally:
            del os.environ[FPS_ENV]
    return make_app


def tune_interpreter() -> None:
    """Once the app is up: the objects alive now live as long as the app, so a full
    collection need not walk them again, and young collections run less often. A
    full collection of the startup heap (~130k objects) stopped the app, its
    keys and its output for 100-200 ms every 20-30 s. Threads trade turns every
    SWITCH_INTERVAL_S."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
