"""Entry points the CLI calls: `qqtui` (the app) and `qqtui demo` (the app on a home with
the sample agents already queued)."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qqtui.config import Settings, default_db_url

if TYPE_CHECKING:
    from qqtui.tui.app import QqApp

BELL_ENV = "QQTUI_BELL"
# Textual's own setting, read once when it is imported. A screen repaints on a timer of
# this rate, and the frame after one that came off an idle timer waits one to two
# periods: at 60 a key press landing just after a poll's repaint waited up to 33 ms
# for its own; at 120, up to 17 (bench/README.md, "App"). Frames are drawn only when
# something changed, so an idle app pays nothing for it; a flooding run's output view
# costs ~1.4 points of a core more (6.7% -> 8.1%). The user's own value wins.
FPS_ENV = "TEXTUAL_FPS"
APP_FPS = 120


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


def run_app(settings: Settings, *, bell: bool | None = None) -> int:
    """Open the app on `settings`; a worker is started if none is alive for this home.

    `bell` (default: env QQTUI_BELL=1) rings the terminal bell with each alert toast.
    """
    make_app = import_app()
    if bell is None:
        bell = os.environ.get(BELL_ENV, "") in ("1", "true", "yes")
    app = make_app(settings, bell=bell, when_ready=_tune_interpreter)
    try:
        result = app.run()
    finally:
        app.store.close()
    if app.crash is not None:
        # Textual has printed its own traceback; the file keeps it for a bug report.
        from qqtui.core.crashlog import save_crash_report

        path = save_crash_report(settings.home, app.crash)
        print(f"qqtui: the app crashed; traceback saved to {path}", file=sys.stderr)
        return app.return_code or 1
    return int(result or 0)


# How long a thread may hold the interpreter while another waits for it (Python's
# default is 5 ms). The app's loop shares it with the poll thread, and Textual writes
# each frame to the terminal from a thread of its own: with 5 ms, a frame that was
# ready waited a median 1.9 ms (up to 5) for that thread to be let in, and a key that
# arrived during a poll waited up to 5 ms at each turn of the loop. Threads only trade
# turns this often while both have work, so an idle app pays nothing for it.
SWITCH_INTERVAL_S = 0.0005


def _tune_interpreter() -> None:
    """Once the app is up: the objects alive now live as long as the app, so a full
    collection need not walk them again, and young collections run less often. A
    full collection of the startup heap (~130k objects) stopped the app, its
    keys and its output for 100-200 ms every 20-30 s. Threads trade turns every
    SWITCH_INTERVAL_S."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def demo_settings(home: Path | None = None) -> Settings:
    """A fresh private home under the temp dir unless `home` is given."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="qqtui-demo-"))
    return Settings(home=home, db_url=default_db_url(home))


def queue_demo_runs(settings: Settings) -> list[int]:
    """Queue every demo run (see qqtui.demo.catalog); returns their ids. The app starts
    the worker: a second `ensure_worker` here would race the first one's registration
    and start two."""
    from qqtui.core.launch import submit_run
    from qqtui.core.sessions import ensure_home
    from qqtui.core.store import Store
    from qqtui.demo.catalog import demo_runs

    ensure_home(settings.home)
    store = Store.open(settings.db_url, actor="demo")
    try:
        ids = []
        for demo in demo_runs():
            run = submit_run(
                store,
                settings.home,
                list(demo.argv),
                name=demo.name,
                agent=demo.agent,
                cwd=str(settings.home),
                timeout_s=demo.timeout_s,
                hung_after_s=demo.hung_after_s,
                # The demo agents write only inside their session directories, so they
                # may share the cwd; otherwise its lease would run them one at a time.
                shared_workspace=True,
                actor="demo",
            )
            ids.append(run.id)
        return ids
    finally:
        store.close()


def run_demo(settings: Settings | None = None) -> int:
    """`qqtui demo`: the app on a fresh demo home (or `settings`' home) with the sample
    agents queued and a worker running them. Pass None for a fresh temp home."""
    settings = settings or demo_settings()
    queue_demo_runs(settings)
    code = run_app(settings)
    for line in demo_farewell(settings):
        print(line)
    return code


def demo_farewell(settings: Settings) -> list[str]:
    """What the demo says on the way out: its runs outlive the app, so name the commands
    that reopen it and that stop its worker (which otherwise exits once idle)."""
    import shlex

    qq = f"{qqtui_command()} --home {shlex.quote(str(settings.home))}"
    return [
        f"qqtui demo: runs keep going in the background; home is {settings.home}",
        f"  reopen with: {qq}",
        f"  stop its worker and runs: {qq} worker stop --stop-runs",
    ]


def qqtui_command() -> str:
    """How the user can type qqtui: its name when it is on PATH, else this interpreter's -m."""
    import shlex
    import shutil

    found = shutil.which("qqtui")
    if found and Path(found).resolve() == Path(sys.argv[0]).resolve():
        return "qqtui"
    return f"{shlex.quote(sys.executable)} -m qqtui"
