"""Pilot tests of the "needs you" flag (#15 item 5): a real agent run that says it
waits, against a real worker; and runs flagged in a real store: the badge, the
toast, the bell, the header count, the order of the table, the details pane, and
the desktop notification's exact bytes for a hostile reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qqtui.config import Settings
from qqtui.core.records import Status
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.tui.desktop_notify import notification_text, osc_notification
from qqtui.tui.screens.details import DetailsScreen
from qqtui.tui.screens.main import MainScreen
from qqtui.tui.widgets.header import CountsHeader
from qqtui.tui.widgets.run_table import RunTable
from tests.tui.conftest import select_run, wait_until
from tests.tui.test_app import SIZE, _row_text, _screen_text, add, app_for, shown_ids, toasts

HOSTILE_REASON = "\x1b]52;c;cm0gLXJmIH4K\x07approve\x9c edit; 9;4;1\x1b\\ to\nx.py?\u202e\x07"


def _claim_all(store: Store, count: int) -> dict[int, str]:
    return {r.id: r.claim_token or "" for r in store.claim_runs("w", limit=count)}


def _header_text(app: object) -> str:
    header = app.screen.query_one(CountsHeader)  # type: ignore[attr-defined]
    return str(header.render())


@pytest.mark.asyncio
async def test_a_real_agent_that_waits_gets_badge_toast_bell_and_count(
    tmp_path: Path, tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    start, go = tmp_path / "start", tmp_path / "go"
    script = (
        "import pathlib, time\n"
        "from qqtui import agent\n"
        f"while not pathlib.Path({str(start)!r}).exists(): time.sleep(0.05)\n"
        "agent.waiting('approve edit to x.py?')\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "agent.working()\n"
        "time.sleep(30)\n"
    )
    shared = {"shared_workspace": True}
    asker = add(tui_store, tui_settings, sys.executable, "-c", script, name="asker", **shared)
    others = [
        add(tui_store, tui_settings, "sleep", "30", name=f"busy {i}", **shared) for i in range(2)
    ]
    app = app_for(tui_settings, tui_store, bell=True)
    rings: list[bool] = []
    app.bell = lambda: rings.append(True)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        # A wait already there at the app's first poll is shown, not announced.
        await wait_until(pilot, lambda: app.last_poll is not None)
        start.touch()
        toast = f"run {asker} needs you: approve edit to x.py?"
        await wait_until(pilot, lambda: toast in toasts(app), what="the waiting toast")
        await wait_until(pilot, lambda: " WAIT " in _row_text(app, asker))
        assert "needs you: approve edit to x.py?" in _row_text(app, asker)
        assert "1 waiting" in _header_text(app)
        assert rings == [True]
        # Newest first, except that the run that needs you is above them all.
        await wait_until(pilot, lambda: set(shown_ids(app)) == {asker, *others})
        assert shown_ids(app) == [asker, *sorted(others, reverse=True)]
        go.touch()
        await wait_until(pilot, lambda: " WAIT " not in _row_text(app, asker), what="cleared")
        await wait_until(pilot, lambda: shown_ids(app)[0] == others[-1])
        assert "waiting" not in _header_text(app), "the count shows while some wait"
        assert rings == [True], "no second ring for the same wait"


@pytest.mark.asyncio
async def test_waiting_runs_sort_first_both_ways_and_filter_by_word(
    tui_settings: Settings, tui_store: Store
) -> None:
    ids = [
        add(tui_store, tui_settings, "sleep", "60", name=f"run {i}", shared_workspace=True)
        for i in range(4)
    ]
    tokens = _claim_all(tui_store, 4)
    tui_store.set_waiting(ids[1], tokens[ids[1]], True, "which branch?", "agent")
    tui_store.set_hung(ids[2], tokens[ids[2]], True, "silent")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 4)
        assert shown_ids(app) == [ids[1], ids[3], ids[2], ids[0]]
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await wait_until(pilot, lambda: screen.selected_run is not None)
        assert screen.selected_run.id == ids[1], "it opens on the run that needs you"  # type: ignore[union-attr]
        assert " HUNG " in _row_text(app, ids[2]) and " WAIT " in _row_text(app, ids[1])
        table = app.screen.query_one(RunTable)
        table.set_sort("id", False)
        assert shown_ids(app) == [ids[1], ids[0], ids[2], ids[3]]
        table.set_sort("name", True)
        assert shown_ids(app)[0] == ids[1]
        await pilot.press("slash")
        await pilot.press(*"waiting")
        await wait_until(pilot, lambda: shown_ids(app) == [ids[1]], what="the filter")


@pytest.mark.asyncio
async def test_details_show_the_reason_sanitised_and_the_desktop_notification_is_inert(
    tui_settings: Settings, tui_store: Store
) -> None:
    run_id = add(tui_store, tui_settings, "sleep", "60", name="hostile asker")
    token = _claim_all(tui_store, 1)[run_id]
    app = app_for(tui_settings, tui_store, notify=("osc9", "osc777"))
    async with app.run_test(size=SIZE) as pilot:
        written: list[str] = []
        driver = app._driver
        assert driver is not None
        write = driver.write

        def recording_write(data: str) -> None:
            written.append(data)
            write(data)

        driver.write = recording_write  # type: ignore[method-assign]
        await wait_until(pilot, lambda: app.last_poll is not None)
        tui_store.set_waiting(run_id, token, True, HOSTILE_REASON, "agent")
        await wait_until(pilot, lambda: any("needs you" in t for t in toasts(app)))
        body = "approve edit, 9,4,1 to x.py?"
        title = f"qqtui: run {run_id} needs you"
        expected = f"\x1b]9;{title}: {body}\x07\x1b]777;notify;{title};{body}\x07"
        assert [w for w in written if w.startswith("\x1b]")] == [expected]
        assert all("\x1b" not in t and "\x07" not in t for t in toasts(app))
        await select_run(pilot, app, run_id)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen))
        await wait_until(pilot, lambda: "Needs you" in _screen_text(app))
        text = _screen_text(app)
        assert "WAITING" in text and "approve edit; 9;4;1 to" in text
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text


def test_notification_text_is_capped_and_has_nothing_that_ends_an_osc() -> None:
    text = notification_text("a" * 500 + "\x07\x1b\\\x9c;")
    assert len(text) == 160 and text.endswith("…")
    for hostile in (HOSTILE_REASON, "\x9d9;x\x9c", "line\u2028break", "\x00\x7f;;"):
        sequence = osc_notification(hostile, hostile, ("osc9", "osc777"))
        # Exactly two sequences, each ended by its own BEL, no other control inside.
        parts = sequence.split("\x07")
        assert parts[-1] == "" and len(parts) == 3
        for part in parts[:2]:
            assert part.startswith("\x1b]") and "\x1b" not in part[1:]
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in part[1:])
        assert sequence.count(";") == 1 + 3, "only the sequences' own separators"


def test_the_header_counts_only_running_waiting_runs(
    tui_settings: Settings, tui_store: Store
) -> None:
    from qqtui.core.monitor import count_runs

    run_id = add(tui_store, tui_settings, "sleep", "60")
    token = _claim_all(tui_store, 1)[run_id]
    tui_store.set_waiting(run_id, token, True, "?", "agent")
    counts = count_runs(Snapshot(tui_settings.db_url).runs())
    assert counts["waiting"] == 1 and counts["hung"] == 0
    tui_store.finish_run(run_id, token, Status.CANCELLED, reason="cancelled")
    assert count_runs(Snapshot(tui_settings.db_url).runs())["waiting"] == 0


@pytest.mark.parametrize(
    ("toml", "kinds"),
    [
        ("", ()),
        ("[tui]\nnotify = true\n", ("osc9",)),
        ("[tui]\nnotify = false\n", ()),
        ('[tui]\nnotify = "osc777"\n', ("osc777",)),
        ('[tui]\nnotify = "both"\n', ("osc9", "osc777")),
    ],
)
def test_tui_notify_from_config(tmp_path: Path, toml: str, kinds: tuple[str, ...]) -> None:
    from qqtui.config import tui_notify

    (tmp_path / "config.toml").write_text(toml)
    assert tui_notify(tmp_path) == kinds


def test_a_wrong_tui_notify_is_one_clear_error(tmp_path: Path) -> None:
    from qqtui.config import tui_notify
    from qqtui.core.errors import QqError

    (tmp_path / "config.toml").write_text('[tui]\nnotify = "loud"\n')
    with pytest.raises(QqError, match=r"\[tui\] notify must be true, false"):
        tui_notify(tmp_path)
    assert tui_notify(tmp_path / "nowhere") == ()
