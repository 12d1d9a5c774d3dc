"""SVG snapshots of every screen and dialog, from fixed data and a fixed clock (no worker,
no process scan), so they change only when the app's look changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from qqtui.config import Settings
from qqtui.core import sessions
from qqtui.core.intents import output_log_path
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.tui.app import QqApp
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.run_table import RunTable
from tests.tui.conftest import wait_until

NOW = 1_790_000_000.0  # a fixed "now" for every age and runtime on screen
SIZE = (160, 45)
LOCATION = "~/.qq  ·  sqlite:///~/.qq/qqtui.db"

HOSTILE_OUTPUT = (
    "hostile agent starting\n"
    "\x1b]52;c;cm0gLXJmIH4K\x07clipboard write above was dropped\n"
    "\x1b]0;pwned title\x07title change above was dropped\n"
    "\x1b[2J\x1b[Hscreen clear above was dropped\n"
    "\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m stay coloured\n"
    "[bold red]rich markup stays literal[/bold red]\n"
    "\x1b]8;;https://evil.example\x1b\\a link\x1b]8;;\x1b\\ shows as plain text\n"
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _session(home: Path, agent: str, session_id: str, created_at: float) -> Path:
    path = sessions.create_session_dir(home, agent, session_id)
    sessions.atomic_write_json(
        path / sessions.META_FILE,
        {"session_id": session_id, "agent": agent, "created_at": created_at},
    )
    return path


def build_fixture(settings: Settings) -> dict[str, int]:
    """Runs in every state, with fixed times, sessions and ids."""
    clock = Clock(NOW - 3600)
    store = Store.open(settings.db_url, clock=clock, host="devbox", actor="test")
    home = settings.home
    specs: list[tuple[str, str, list[str], str]] = [
        (
            "coder: fix the flaky test",
            "coder",
            ["qq", "-m", "fix the flaky test"],
            "20260911_100000_0000c0de",
        ),
        ("coder: add retries", "coder", ["qq", "-m", "add retries"], "20260911_100500_0000c0df"),
        ("migrate database", "fail", ["python", "migrate.py"], "20260911_101000_0000fa11"),
        ("slow API call", "hang", ["python", "call_api.py"], "20260911_101500_00000bad"),
        ("nightly index", "default", ["make", "index"], "20260911_102000_0000beef"),
        (
            "hostile: escape sequences",
            "hostile",
            ["python", "hostile.py"],
            "20260911_102500_0000d00d",
        ),
        ("waiting for a slot", "default", ["sleep", "60"], "20260911_103000_0000cafe"),
        ("timeout demo", "default", ["sleep", "999"], "20260911_103500_0000f00d"),
    ]
    ids: dict[str, int] = {}
    for offset, (name, agent, argv, sid) in enumerate(specs):
        _session(home, agent, sid, NOW - 3600 + offset * 60)
        clock.now = NOW - 3600 + offset * 60
        run = store.add_run(
            RunSpec(argv=argv, cwd="/work/project", name=name, agent=agent, hung_after_s=60),
            session_id=sid,
        )
        ids[name] = run.id
    clock.now = NOW - 600
    claimed = {r.id: r for r in store.claim_runs("worker-1", limit=6)}
    token = {run_id: r.claim_token or "" for run_id, r in claimed.items()}
    clock.now = NOW - 300
    store.finish_run(
        ids["migrate database"],
        token[ids["migrate database"]],
        Status.FAILED,
        reason="exit 3",
        exit_code=3,
    )
    store.finish_run(
        ids["nightly index"],
        token[ids["nightly index"]],
        Status.SUCCEEDED,
        reason="exit 0",
        exit_code=0,
    )
    store.set_hung(ids["slow API call"], token[ids["slow API call"]], True, "no output for 60s")
    store.request_cancel(ids["waiting for a slot"])
    clock.now = NOW - 30
    store.finish_run(
        ids["hostile: escape sequences"],
        token[ids["hostile: escape sequences"]],
        Status.SUCCEEDED,
        reason="exit 0",
        exit_code=0,
    )
    store.close()
    hostile = _run(settings, ids["hostile: escape sequences"])
    log = output_log_path(home, hostile)
    log.parent.mkdir(parents=True, exist_ok=True)
    # Invalid UTF-8 must show as replacement characters, not crash or vanish.
    log.write_bytes(HOSTILE_OUTPUT.encode() + b"invalid utf-8: \xff\xfe done\n")
    coder = _run(settings, ids["coder: fix the flaky test"])
    coder_log = output_log_path(home, coder)
    coder_log.parent.mkdir(parents=True, exist_ok=True)
    coder_log.write_text(
        "coder · session 20260911_100000_0000c0de\n"
        "user: fix the flaky test\n"
        "\x1b[36m[1/8]\x1b[0m read  tests/test_queue.py\n"
        "    the flaky test waits on a sleep(0.1)\n"
        "\x1b[36m[2/8]\x1b[0m grep  claim_next_run\n"
    )
    sessions.atomic_write_json(
        _session(home, "coder", "20260911_100000_0000c0de", NOW - 3600) / "history.json",
        {
            "messages": [
                {"role": "user", "content": "fix the flaky test"},
                {
                    "role": "assistant",
                    "content": "The test waits on sleep(0.1); I will wait on the event instead.",
                },
            ]
        },
    )
    return ids


def _run(settings: Settings, run_id: int) -> Any:
    from qqtui.core.snapshot import Snapshot

    run = Snapshot(settings.db_url).run(run_id)
    assert run is not None
    return run


@pytest.fixture
def snapshot_app(tui_settings: Settings, tui_store: Store) -> tuple[QqApp, dict[str, int]]:
    ids = build_fixture(tui_settings)
    app = QqApp(
        tui_settings,
        tui_store,
        clock=Clock(NOW),
        start_worker=False,
        scan_processes=False,
        poll_interval=3600,
        location=LOCATION,
        cwd="/",  # exists everywhere: the launch form's cwd check must not depend on the machine
    )
    return app, ids


@pytest.fixture
def waiting_snapshot_app(
    snapshot_app: tuple[QqApp, dict[str, int]], tui_settings: Settings
) -> tuple[QqApp, dict[str, int]]:
    """The same fixture, with one running run waiting for its user (#15)."""
    app, ids = snapshot_app
    store = Store.open(tui_settings.db_url, clock=Clock(NOW - 120), host="devbox", actor="test")
    run = store.get_run(ids["coder: add retries"])
    store.set_waiting(
        run.id, run.claim_token or "", True, "approve edit to tests/test_queue.py?", "agent"
    )
    store.close()
    return app, ids


def settle(
    select_name: str | None = None, then: Callable[[Pilot[Any]], Awaitable[None]] | None = None
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """run_before: wait for the table (and the selected run's output), then `then`."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app: QqApp = pilot.app  # type: ignore[assignment]
        await wait_until(pilot, lambda: app.last_poll is not None, what="first poll")
        table = app.screen.query_one(RunTable)
        await wait_until(pilot, lambda: table.row_count == 8)
        if select_name is not None:
            run_id = next(r.id for r in app.last_poll.result.runs.values() if r.name == select_name)  # type: ignore[union-attr]
            table.select_run(run_id)
        output = app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: output.line_count > 0, what="output shown")
        if then is not None:
            await then(pilot)
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]) -> None:
    app, _ = snapshot_app
    assert snap_compare(app, terminal_size=SIZE, run_before=settle("coder: fix the flaky test"))


def test_hostile_output_is_inert(
    snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]
) -> None:
    app, _ = snapshot_app
    assert snap_compare(app, terminal_size=SIZE, run_before=settle("hostile: escape sequences"))


def test_launch_form(snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]) -> None:
    app, _ = snapshot_app

    async def open_form(pilot: Pilot[Any]) -> None:
        await pilot.press("n")
        await wait_until(pilot, lambda: len(pilot.app.screen.query(Input)) > 0)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.press(*"qq -m 'oops", "ctrl+s")

    assert snap_compare(
        app, terminal_size=SIZE, run_before=settle("coder: fix the flaky test", open_form)
    )


def test_confirm_cancel_dialog(
    snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]
) -> None:
    app, _ = snapshot_app
    assert snap_compare(
        app, terminal_size=SIZE, press=["c"], run_before=settle("coder: fix the flaky test")
    )


def test_help(snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]) -> None:
    app, _ = snapshot_app
    assert snap_compare(
        app,
        terminal_size=SIZE,
        press=["question_mark"],
        run_before=settle("coder: fix the flaky test"),
    )


async def open_sessions(pilot: Pilot[Any]) -> None:
    """Press s and wait for the sessions screen to list the fixture's eight sessions."""
    await pilot.press("s")
    await wait_until(
        pilot,
        lambda: "sessions  8" in str(pilot.app.screen.query_one("#sessions").border_title),
    )


def test_sessions_screen(snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]) -> None:
    app, _ = snapshot_app

    assert snap_compare(
        app, terminal_size=SIZE, run_before=settle("coder: fix the flaky test", open_sessions)
    )


def test_session_view(snap_compare: Any, snapshot_app: tuple[QqApp, dict[str, int]]) -> None:
    app, _ = snapshot_app

    async def open_session(pilot: Pilot[Any]) -> None:
        await open_sessions(pilot)
        # coder sessions come first (agents A-Z), the newest coder session is c0df; go to c0de.
        await pilot.press("down", "enter")
        output = pilot.app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: output.line_count == 5, what="session output")

    assert snap_compare(
        app, terminal_size=SIZE, run_before=settle("coder: fix the flaky test", open_session)
    )


def test_waiting_badge(
    snap_compare: Any, waiting_snapshot_app: tuple[QqApp, dict[str, int]]
) -> None:
    """The WAIT badge, its reason in the row, the header's count, and the row on top."""
    app, _ = waiting_snapshot_app
    assert snap_compare(app, terminal_size=SIZE, run_before=settle("coder: fix the flaky test"))
