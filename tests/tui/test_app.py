"""Pilot tests: drive every binding against a temp home with a real store and a real
worker; assert on the store's state and on what the screen shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import psutil
import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from qqtui.config import Settings
from qqtui.core.intents import output_log_path, submit_run
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.tui.app import QqApp, make_app
from qqtui.tui.poller import InputGate
from qqtui.tui.screens.confirm import ConfirmScreen
from qqtui.tui.screens.details import DetailsScreen
from qqtui.tui.screens.help import HelpScreen
from qqtui.tui.screens.launch_form import LaunchForm
from qqtui.tui.screens.main import MainScreen
from qqtui.tui.screens.sessions import SessionScreen, SessionsScreen
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.pid_tree import PidTree
from qqtui.tui.widgets.run_table import RunTable
from tests.tui.conftest import run_status, select_run, wait_until

SIZE = (160, 45)
REPO = Path(__file__).resolve().parents[2]


def app_for(settings: Settings, store: Store, **kwargs: object) -> QqApp:
    kwargs.setdefault("start_worker", False)
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("cwd", str(settings.home))
    return make_app(settings, store, **kwargs)  # type: ignore[arg-type]


def add(store: Store, settings: Settings, *argv: str, **kwargs: object) -> int:
    run = submit_run(store, settings.home, RunSpec(list(argv), cwd=str(settings.home), **kwargs))  # type: ignore[arg-type]
    return run.id


def shown_ids(app: QqApp) -> list[int]:
    return app.screen.query_one(RunTable).run_ids


def status_of(settings: Settings, run_id: int) -> Status | None:
    return run_status(settings.db_url, run_id)


def toasts(app: QqApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def open_launch_form(pilot: Pilot[object], app: QqApp) -> LaunchForm:
    """Press n and wait for the launch form."""
    await pilot.press("n")
    await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
    form = app.screen
    assert isinstance(form, LaunchForm)
    return form


@pytest.mark.asyncio
async def test_launch_form_queues_a_run_that_runs_and_shows_its_output(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_launch_form(pilot, app)
        form.query_one(
            "#launch-command"
        ).value = f"{sys.executable} -c \"import time\nfor i in range(300): print('tick', i, flush=True); time.sleep(0.1)\""
        form.query_one("#launch-name").value = "ticker"
        form.query_one("#launch-agent").value = "tester"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        # Checked while it shows: toasts expire, and a loaded machine is slow below.
        await wait_until(pilot, lambda: any("Queued run" in t for t in toasts(app)))
        runs = await wait_until(pilot, lambda: Snapshot(tui_settings.db_url).runs())
        run = runs[0]  # type: ignore[index]
        assert run.name == "ticker" and run.agent == "tester"
        assert run.workspace == str(tui_settings.home), "by default a run holds its cwd"
        assert run.argv[0] == sys.executable
        await wait_until(pilot, lambda: status_of(tui_settings, run.id) is Status.RUNNING)
        # The new run is selected and its output streams into the output pane.
        output = app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: output.line_count >= 3, what="output lines")
        assert output.path == output_log_path(tui_settings.home, run)
        await wait_until(pilot, lambda: "▶ running" in _row_text(app, run.id))


def _row_text(app: QqApp, run_id: int) -> str:
    table = app.screen.query_one(RunTable)
    if run_id not in table.run_ids:
        return ""
    return " ".join(str(getattr(c, "plain", c)) for c in table.get_row(str(run_id)))


@pytest.mark.asyncio
async def test_launch_form_can_share_the_working_dir(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_launch_form(pilot, app)
        form.query_one("#launch-command").value = "sleep 1"
        form.query_one("#launch-shared").value = True
        await pilot.press("ctrl+s")
        runs = await wait_until(pilot, lambda: Snapshot(tui_settings.db_url).runs())
        assert runs[0].workspace is None  # type: ignore[index]


@pytest.mark.asyncio
async def test_launch_form_shows_invalid_input_next_to_each_field(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_launch_form(pilot, app)
        form.query_one("#launch-command").value = 'echo "unterminated'
        form.query_one("#launch-agent").value = "bad agent!"
        form.query_one("#launch-cwd").value = str(tui_settings.home / "missing")
        form.query_one("#launch-timeout").value = "-5"
        form.query_one("#launch-hung").value = "soon"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, LaunchForm), "invalid input must keep the form open"
        errors = {
            key: str(form.query_one(f"#launch-{key}-error").render())
            for key in ("command", "agent", "cwd", "timeout", "hung")
        }
        assert "quotation" in errors["command"].lower()
        assert "invalid agent name" in errors["agent"]
        assert "is not a directory" in errors["cwd"]
        assert "positive" in errors["timeout"]
        assert "not a number" in errors["hung"]
        assert Snapshot(tui_settings.db_url).runs() == []
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert Snapshot(tui_settings.db_url).runs() == []


@pytest.mark.asyncio
async def test_cancel_asks_then_cancels_the_running_run(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(tui_store, tui_settings, "sleep", "300", name="sleeper")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.RUNNING)
        await select_run(pilot, app, run_id)
        await wait_until(pilot, lambda: "▶ running" in _row_text(app, run_id))
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # no: nothing happens
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert status_of(tui_settings, run_id) is Status.RUNNING
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        # Immediate feedback, checked while it shows: a toast expires after 4 s, and on
        # a loaded machine the stop itself can take longer than that.
        await wait_until(
            pilot,
            lambda: any("cancel requested" in t for t in toasts(app)),
            what="the 'cancel requested' toast",
        )
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.CANCELLED)
        await wait_until(pilot, lambda: "cancelled" in _row_text(app, run_id))
        # Cancel no longer applies to the finished run: greyed out, and pressing it does nothing.
        await wait_until(pilot, lambda: app.screen.check_action("cancel", ()) is None)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


def footer_keys(app: QqApp) -> dict[str, bool]:
    """The Footer's keys as drawn: action -> enabled."""
    return {key.action: not key.has_class("-disabled") for key in app.screen.query(FooterKey)}


@pytest.mark.asyncio
async def test_footer_follows_the_selected_runs_status(
    tui_settings: Settings, tui_store: Store
) -> None:
    # The selected run stays selected while it finishes: only its record changes, and
    # the Footer must still trade cancel/kill for retry/resume.
    run_id = add(tui_store, tui_settings, "sleep", "300", name="finishing")
    token = tui_store.claim_runs("w")[0].claim_token or ""
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, run_id)
        await wait_until(pilot, lambda: footer_keys(app).get("cancel") is True, what="cancel on")
        assert footer_keys(app).get("retry") is False
        tui_store.finish_run(run_id, token, Status.FAILED, reason="exit 1", exit_code=1)
        await wait_until(
            pilot,
            lambda: footer_keys(app).get("retry") is True and not footer_keys(app).get("cancel"),
            what="retry on, cancel off",
        )


@pytest.mark.asyncio
async def test_arrow_keys_move_the_selection_as_they_arrive(
    tui_settings: Settings, tui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The App runs the table's cursor keys itself (priority bindings): the key is not
    # sent on to the table to bubble back up first, which left room for a repaint
    # to go ahead of it. Other keys still reach the table.
    ids = [add(tui_store, tui_settings, "sleep", "300", name=f"run {i}") for i in range(3)]
    forwarded: list[str] = []
    forward = RunTable._forward_event

    def recording(table: RunTable, event: object) -> None:
        forwarded.append(getattr(event, "key", type(event).__name__))
        forward(table, event)  # type: ignore[arg-type]

    monkeypatch.setattr(RunTable, "_forward_event", recording)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, ids[-1])  # the newest: the top row
        table = app.screen.query_one(RunTable)
        table.focus()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MainScreen)
        for key, want in (("down", ids[1]), ("down", ids[0]), ("up", ids[1])):
            forwarded.clear()
            await pilot.press(key)
            await wait_until(
                pilot, lambda w=want: screen.selected_run and screen.selected_run.id == w
            )
            assert key not in forwarded
        await pilot.press("o")  # a key the table binds without priority: sort
        await wait_until(pilot, lambda: table.sort_column != "id", what="the next sort column")
        assert "o" in forwarded


@pytest.mark.asyncio
async def test_a_key_press_holds_polls_back_until_it_is_answered(
    tui_settings: Settings, tui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poll thread steps aside (InputGate) from the moment a key arrives until the
    # screen shows the answer; then it goes on, so polls keep coming.
    closed: list[float] = []
    close = InputGate.close
    monkeypatch.setattr(InputGate, "close", lambda gate: closed.append(1) or close(gate))
    add(tui_store, tui_settings, "sleep", "300", name="a run")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_poll is not None)
        for key in ("down", "up", "o"):
            await pilot.press(key)
        assert len(closed) >= 3  # a key the App forwards comes back to it as it bubbles
        await wait_until(pilot, lambda: app.input_gate.is_open, what="the gate open again")
        seen = app.last_poll
        await wait_until(pilot, lambda: app.last_poll is not seen, what="a poll after the keys")


@pytest.mark.asyncio
async def test_a_poll_that_crashes_is_a_toast_and_polling_goes_on(
    tui_settings: Settings, tui_store: Store
) -> None:
    # A fault injected where the poll thread calls out (the app's clock), standing for
    # any bug in a poll: not an outage banner, one toast, and the next polls still work.
    broken = threading.Event()

    def clock() -> float:
        if broken.is_set():
            raise ValueError("clock went backwards")
        return time.time()

    app = app_for(tui_settings, tui_store, clock=clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_poll is not None)
        broken.set()
        await wait_until(
            pilot,
            lambda: any("ValueError: clock went backwards" in t for t in toasts(app)),
            what="the poll error toast",
        )
        assert app.outage is None
        broken.clear()
        seen = app.last_poll
        await wait_until(pilot, lambda: app.last_poll is not seen, what="a poll after the crash")
        assert "database unreachable" not in _screen_text(app)


@pytest.mark.asyncio
async def test_kill_stops_the_whole_tree_now(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(
        tui_store,
        tui_settings,
        "sh",
        "-c",
        "trap '' TERM; sleep 300 & sleep 301 & wait",
        name="stubborn",
    )
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.RUNNING)
        await select_run(pilot, app, run_id)
        pids = app.screen.query_one(PidTree)
        await wait_until(pilot, lambda: pids.tree is not None and pids.tree.count >= 3)
        members = [p.pid for p in pids.tree.procs]  # type: ignore[union-attr]
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.CANCELLED)
        run = Snapshot(tui_settings.db_url).run(run_id)
        assert run is not None and run.kill_requested
        await wait_until(pilot, lambda: not any(psutil.pid_exists(p) for p in members))


@pytest.mark.asyncio
async def test_retry_and_resume_queue_new_work(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        # Added after the first poll, so its failure is a change the app sees happen.
        await wait_until(pilot, lambda: app.last_poll is not None)
        run_id = add(tui_store, tui_settings, "sh", "-c", "echo oops; exit 3", name="failing")
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.FAILED)
        await select_run(pilot, app, run_id)
        await wait_until(pilot, lambda: "failed" in _row_text(app, run_id))
        # The failure was noticed by diffing polls: a toast says so.
        await wait_until(pilot, lambda: any("failed" in t for t in toasts(app)))
        assert app.screen.check_action("cancel", ()) is None
        await pilot.press("R")
        await wait_until(
            pilot,
            lambda: (r := Snapshot(tui_settings.db_url).run(run_id)) and r.attempt == 2,
            what="attempt 2",
        )
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.FAILED)
        await select_run(pilot, app, run_id)
        await wait_until(pilot, lambda: app.screen.check_action("resume", ()))
        await pilot.press("r")
        runs = await wait_until(pilot, lambda: len(Snapshot(tui_settings.db_url).runs()) == 2)
        assert runs
        first, second = Snapshot(tui_settings.db_url).runs()
        assert second.session_id == first.session_id and second.argv == first.argv


@pytest.mark.asyncio
async def test_details_shows_command_env_and_timeline(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(
        tui_store, tui_settings, "sh", "-c", "echo hi", name="greeter", env={"GREETING": "hello"}
    )
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.SUCCEEDED)
        await select_run(pilot, app, run_id)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen))

        def body() -> str:
            return _screen_text(app)

        await wait_until(pilot, lambda: "GREETING=hello" in body(), what="details")
        text = body()
        assert "sh -c 'echo hi'" in text
        assert "queued → running" in text and "running → succeeded" in text
        assert str(tui_settings.home) in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))


def _screen_text(app: QqApp) -> str:
    """Everything on screen as plain text (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


@pytest.mark.asyncio
async def test_keys_typed_right_after_slash_go_to_the_filter_not_to_the_table(
    tui_settings: Settings, tui_store: Store
) -> None:
    # A fast typist (or a paste) sends "/" and the words in one burst: every key is in
    # the app's queue before "/" is handled. They must all land in the box, not on the
    # table's bindings ("n" opens the launch form, "r" resumes, "k" kills).
    done = add(tui_store, tui_settings, "echo", "x", name="printer")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [done])
        for char in "/prin":
            app.post_message(events.Key("slash" if char == "/" else char, char))
        await wait_until(pilot, lambda: app.screen.query_one("#filter").value == "prin")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen), "a key reached the table's bindings"
        assert [r.id for r in Snapshot(tui_settings.db_url).runs()] == [done]
        await pilot.press("slash", "x")  # in the box, "/" is text
        assert app.screen.query_one("#filter").value == "prin/x"
        await pilot.press("n")  # and so is "n", which opens the launch form elsewhere
        assert app.screen.query_one("#filter").value == "prin/xn"
        assert isinstance(app.screen, MainScreen)


@pytest.mark.asyncio
async def test_a_key_typed_right_after_enter_in_the_filter_is_the_tables(
    tui_settings: Settings, tui_store: Store
) -> None:
    done = add(tui_store, tui_settings, "echo", "x", name="printer")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [done])
        # One burst: "?" right after Enter opens the help, it is not typed in the box.
        keys = [("slash", "/"), *((c, c) for c in "prin"), ("enter", "\r"), ("question_mark", "?")]
        for key, char in keys:
            app.post_message(events.Key(key, char))
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        app.pop_screen()
        await pilot.pause()
        box = app.screen.query_one("#filter", Input)
        assert box.value == "prin" and box.has_class("-open"), "the filter is kept, shown"
        assert app.screen.query_one(RunTable).has_focus


@pytest.mark.asyncio
async def test_a_command_typed_right_after_n_lands_in_the_launch_form(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        for char in "nsleep 5":
            app.post_message(events.Key("space" if char == " " else char, char))
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))
        box = app.screen.query_one("#launch-command", Input)
        await wait_until(pilot, lambda: box.value == "sleep 5", what=f"the command ({box.value!r})")
        await pilot.press("x")  # and the box keeps the focus
        assert box.value == "sleep 5x"


@pytest.mark.asyncio
async def test_filter_by_text_and_status(tui_settings: Settings, tui_store: Store) -> None:
    ids = [
        add(tui_store, tui_settings, "echo", "alpha", name="alpha job"),
        add(tui_store, tui_settings, "echo", "beta", name="beta job"),
        add(tui_store, tui_settings, "echo", "gamma", name="gamma job"),
    ]
    cancelled = tui_store.request_cancel(ids[2]).id
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3)
        assert shown_ids(app) == sorted(ids, reverse=True), "newest first by default"
        await pilot.press("slash")
        await pilot.press(*"beta")
        await wait_until(pilot, lambda: shown_ids(app) == [ids[1]], what="text filter")
        filter_box = app.screen.query_one("#filter")
        filter_box.value = "cancelled"
        await wait_until(pilot, lambda: shown_ids(app) == [cancelled], what="status filter")
        filter_box.value = "queued job"
        await wait_until(pilot, lambda: sorted(shown_ids(app)) == ids[:2])
        await pilot.press("enter")
        assert app.screen.query_one(RunTable).has_focus
        assert sorted(shown_ids(app)) == ids[:2], "Enter keeps the filter"
        # Escape clears the filter, from the box or from the table (k9s, lazygit).
        await pilot.press("slash", "escape")
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, what="escape clears")
        assert filter_box.value == "" and app.screen.query_one(RunTable).has_focus
        # Sorting by a header keeps the selection on the same run.
        table = app.screen.query_one(RunTable)
        table.select_run(ids[1])
        await pilot.pause()
        await pilot.press("o")  # next column: name
        await wait_until(pilot, lambda: table.sort_column == "name")
        assert shown_ids(app) == ids  # alpha, beta, gamma
        assert table.selected_run_id == ids[1]
        await pilot.press("O")
        assert shown_ids(app) == list(reversed(ids))


@pytest.mark.asyncio
async def test_follow_search_help_sessions_and_quit(
    tui_settings: Settings, tui_store: Store
) -> None:
    run_id = add(tui_store, tui_settings, "echo", "x", name="logger", agent="writer")
    run = Snapshot(tui_settings.db_url).run(run_id)
    assert run is not None
    log = output_log_path(tui_settings.home, run)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(500)) + "needle here\n")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, run_id)
        output = app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: output.line_count == 501, what="log indexed")
        assert output.follow
        await pilot.press("f")
        assert not output.follow
        await pilot.press("f")
        assert output.follow
        await pilot.press("ctrl+f")
        await pilot.press(*"needle", "enter")
        await wait_until(pilot, lambda: output.match_count == 1, what="search match")
        await wait_until(pilot, lambda: output.current_match_line == 500)
        await pilot.press("escape")
        app.screen.query_one(RunTable).focus()

        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = _screen_text(app)
        for words in ("Launch", "Cancel", "Kill", "Resume", "Retry", "Filter", "Follow", "Search"):
            assert words in help_text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))

        session_dir = log.parents[2]
        (session_dir / "history.json").write_text(
            json.dumps(
                {"messages": [{"role": "user", "content": "fix the [bold]flaky[/bold] test"}]}
            )
        )
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        await wait_until(pilot, lambda: run.session_id in _screen_text(app))  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await wait_until(
            pilot,
            lambda: "fix the [bold]flaky[/bold] test" in _screen_text(app),  # type: ignore[attr-defined]
            what="conversation with literal markup",
        )
        session_output = app.screen.query_one(OutputView)
        await wait_until(pilot, lambda: session_output.line_count == 501)
        # The agent keeps writing: the open view picks up its new history.
        (session_dir / "history.json").write_text(
            json.dumps([{"role": "assistant", "content": [{"type": "text", "text": "done!"}]}])
        )
        await wait_until(pilot, lambda: "done!" in _screen_text(app), what="history refresh")
        # A half-written history file: a clear inline error, no crash.
        (session_dir / "history.json").write_text('{"messages": [{"role": "us')
        await pilot.press("escape")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await wait_until(
            pilot,
            lambda: "is not valid JSON" in _screen_text(app),  # type: ignore[attr-defined]
        )
        await pilot.press("escape", "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running)


@pytest.mark.asyncio
async def test_signal_one_process_from_the_pid_tree(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    run_id = add(tui_store, tui_settings, "sh", "-c", "sleep 300 & sleep 301; wait", name="pair")
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: status_of(tui_settings, run_id) is Status.RUNNING)
        await select_run(pilot, app, run_id)
        pids = app.screen.query_one(PidTree)
        await wait_until(pilot, lambda: pids.tree is not None and pids.tree.count == 3)
        pids.focus()
        target = next(p for p in pids.tree.procs if p.cmdline[-1:] == ("300",))  # type: ignore[union-attr]
        pids.move_cursor(row=pids.get_row_index(str(target.pid)))
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(
            pilot, lambda: any(f"Sent SIGTERM to process {target.pid}" in t for t in toasts(app))
        )
        await wait_until(pilot, lambda: not psutil.pid_exists(target.pid) or _zombie(target.pid))
        assert status_of(tui_settings, run_id) is Status.RUNNING, "only that process got the signal"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.asyncio
async def test_app_starts_a_worker_when_none_is_alive(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store, start_worker=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: tui_store.workers(live_only=True), timeout=30)
            await wait_until(pilot, lambda: any("background worker" in t for t in toasts(app)))
    finally:
        for worker in tui_store.workers(live_only=True):
            proc = psutil.Process(worker.pid)
            proc.terminate()
            proc.wait(timeout=20)


@pytest.mark.asyncio
async def test_command_palette_offers_the_bindings(
    tui_settings: Settings, tui_store: Store
) -> None:
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_poll is not None)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Launch")
        await wait_until(pilot, lambda: "Launch a new run" in _screen_text(app), what="palette hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, LaunchForm))


@pytest.mark.asyncio
async def test_bell_rings_with_alert_toasts(tui_settings: Settings, tui_store: Store) -> None:
    # A name with markup must reach the toast and titles literally, not break them.
    run_id = add(tui_store, tui_settings, "false", name="doomed [/] [bold]x")
    app = app_for(tui_settings, tui_store, bell=True)
    rings: list[bool] = []
    app.bell = lambda: rings.append(True)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.last_poll is not None)
        token = tui_store.claim_runs("w")[0].claim_token or ""
        tui_store.finish_run(run_id, token, Status.FAILED, reason="exit 1", exit_code=1)
        await select_run(pilot, app, run_id)
        await wait_until(pilot, lambda: any("doomed [/] [bold]x failed" in t for t in toasts(app)))
        await wait_until(pilot, lambda: "run 1 · doomed [/] [bold]x" in _screen_text(app))
        assert rings == [True]


def test_the_app_never_runs_sql_or_signals_itself() -> None:
    offenders = []
    for path in (REPO / "qqtui" / "tui").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.kill|killpg|\.execute\(", line):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert offenders == []


def test_demo_home_queues_every_demo_run(tmp_path: Path) -> None:
    from qqtui.demo.catalog import demo_runs
    from qqtui.tui.entry import demo_settings, queue_demo_runs

    settings = demo_settings(tmp_path / "demo")
    with mock.patch("qqtui.core.workerctl.start_detached_worker", return_value=4242) as start:
        ids = queue_demo_runs(settings)
    assert not start.called, "the app starts the worker; two ensure_worker calls race"
    runs = Snapshot(settings.db_url).runs()
    assert [r.id for r in runs] == ids
    assert [r.name for r in runs] == [d.name for d in demo_runs()]
    assert {r.status for r in runs} == {Status.QUEUED}
    fresh = demo_settings()
    try:
        assert fresh.home.name.startswith("qqtui-demo-") and fresh.home.is_dir()
    finally:
        fresh.home.rmdir()


@pytest.mark.asyncio
async def test_sessions_screen_shows_a_migrated_legacy_history(
    tui_settings: Settings, tui_store: Store
) -> None:
    legacy = Path(tui_settings.home) / "oldbot"
    legacy.mkdir()
    original = json.dumps({"messages": [{"role": "user", "content": "from the old layout"}]})
    (legacy / "history.json").write_text(original)
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        await wait_until(pilot, lambda: "oldbot" in _screen_text(app), what="migrated session")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await wait_until(
            pilot, lambda: "from the old layout" in _screen_text(app), what="its history"
        )
    assert (legacy / "history.json").read_text() == original  # the original is untouched
    assert len(list((legacy / "sessions").iterdir())) == 1


@pytest.mark.asyncio
async def test_when_ready_hook_runs_once_the_first_screen_is_up(
    tui_settings: Settings, tui_store: Store
) -> None:
    called: list[str] = []
    app = make_app(
        tui_settings,
        tui_store,
        start_worker=False,
        when_ready=lambda: called.append(type(app.screen).__name__),
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: called, what="the ready hook")
        await pilot.pause(0.2)
    assert called == ["MainScreen"]


@pytest.mark.asyncio
async def test_the_app_opens_on_the_newest_running_run(
    tui_settings: Settings, tui_store: Store, live_worker: subprocess.Popen[bytes]
) -> None:
    sleeper = add(tui_store, tui_settings, "sleep", "60", name="sleeper", shared_workspace=True)
    done = add(tui_store, tui_settings, "true", name="quick", shared_workspace=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        status_of(tui_settings, sleeper) is not Status.RUNNING
        or status_of(tui_settings, done) is not Status.SUCCEEDED
    ):
        time.sleep(0.1)
    assert status_of(tui_settings, done) is Status.SUCCEEDED
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(RunTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        assert shown_ids(app)[0] == done  # newest first: the finished run is on top
        await wait_until(pilot, lambda: table.selected_run_id == sleeper, what="cursor on it")
