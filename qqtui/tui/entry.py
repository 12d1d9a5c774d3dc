"""Entry points the CLI calls: `qqtui` (the app) and `qqtui demo` (the app on a home with
the sample agents already queued)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from qqtui.config import NOTIFY_KINDS, Settings, default_db_url, tui_notify
from qqtui.tui import perf
from qqtui.tui.perf.interpreter import import_app, tune_interpreter

if TYPE_CHECKING:
    from qqtui.core.records import RunRecord

BELL_ENV = "QQTUI_BELL"


def run_app(settings: Settings, *, bell: bool | None = None, notify: bool | None = None) -> int:
    """Open the app on `settings`; a worker is started if none is alive for this home.

    `bell` (default: env QQTUI_BELL=1) rings the terminal bell with each alert toast.
    `notify` (default: `[tui] notify` in config.toml) sends a desktop notification
    (OSC 9, or what the config names) when a run starts waiting for its user.
    """
    make_app = import_app()
    # Textual's private code is replaced here, for this process only: tests that build
    # an app get stock Textual unless they install it (tests/tui/conftest.py).
    perf.install()
    if bell is None:
        bell = os.environ.get(BELL_ENV, "") in ("1", "true", "yes")
    kinds = tui_notify(settings.home)
    if notify is not None:
        kinds = (kinds or NOTIFY_KINDS[True]) if notify else ()
    app = make_app(settings, bell=bell, notify=kinds, when_ready=tune_interpreter)
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


def run_attach(home: Path, run: RunRecord, host: str | None) -> int:
    """`qqtui attach ID`: this terminal shows `run`'s until the detach key; QqError (one
    line) when it cannot be attached. The run goes on after."""
    from qqtui.config import detach_key
    from qqtui.core.records import QqError
    from qqtui.tui.screens.attach import AttachApp, open_attach_screen

    try:
        key = detach_key(home)
    except ValueError as exc:
        raise QqError(str(exc)) from None
    from qqtui.core.ttyclient import check_attachable

    check_attachable(home, run, host)  # the run's own reason first, then ours
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise QqError("qqtui attach needs a terminal (stdin and stdout)")
    screen = open_attach_screen(
        home, run, host, detach_key=key, name=f"qqtui attach (pid {os.getpid()})"
    )
    perf.install()
    app = AttachApp(screen, detach_key=key)
    try:
        app.run()
    finally:
        screen.connection.close()
    return 0


def demo_settings(home: Path | None = None) -> Settings:
    """A fresh private home under the temp dir unless `home` is given."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="qqtui-demo-"))
    return Settings(home=home, db_url=default_db_url(home))


def queue_demo_runs(settings: Settings) -> list[int]:
    """Queue every demo run (see qqtui.demo.catalog); returns their ids. The app starts
    the worker: a second `ensure_worker` here would race the first one's registration
    and start two."""
    from qqtui.core.intents import submit_run
    from qqtui.core.runspec import RunSpec
    from qqtui.core.sessions import ensure_home
    from qqtui.core.store import Store
    from qqtui.demo.catalog import demo_runs

    ensure_home(settings.home)
    store = Store.open(settings.db_url, actor="demo")
    try:
        ids = []
        for demo in demo_runs():
            spec = RunSpec(
                argv=tuple(demo.argv),
                name=demo.name,
                agent=demo.agent,
                cwd=str(settings.home),
                timeout_s=demo.timeout_s,
                hung_after_s=demo.hung_after_s,
                # The demo agents write only inside their session directories, so they
                # may share the cwd; otherwise its lease would run them one at a time.
                shared_workspace=True,
                tty=demo.tty,
            )
            run = submit_run(store, settings.home, spec, actor="demo")
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
